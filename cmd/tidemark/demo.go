package main

import "errors"

// DemoCmd is `tidemark demo`; it is being built (issue 6).
type DemoCmd struct{}

// Run reports that the command does not exist yet.
func (c *DemoCmd) Run() error { return errors.New("tidemark demo is not implemented yet") }
