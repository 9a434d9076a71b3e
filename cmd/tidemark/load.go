package main

import "errors"

// LoadCmd is `tidemark load`; it is being built (issue 3).
type LoadCmd struct{}

// Run reports that the command does not exist yet.
func (c *LoadCmd) Run() error { return errors.New("tidemark load is not implemented yet") }
