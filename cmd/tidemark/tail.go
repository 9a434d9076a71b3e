package main

import "errors"

// TailCmd is `tidemark tail`; it is being built (issue 4).
type TailCmd struct{}

// Run reports that the command does not exist yet.
func (c *TailCmd) Run() error { return errors.New("tidemark tail is not implemented yet") }
