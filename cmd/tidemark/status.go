package main

import "errors"

// StatusCmd is `tidemark status`; it is being built (issue 6).
type StatusCmd struct{}

// Run reports that the command does not exist yet.
func (c *StatusCmd) Run() error { return errors.New("tidemark status is not implemented yet") }
