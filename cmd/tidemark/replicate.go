package main

import "errors"

// ReplicateCmd is `tidemark replicate`; it is being built (issue 4).
type ReplicateCmd struct{}

// Run reports that the command does not exist yet.
func (c *ReplicateCmd) Run() error { return errors.New("tidemark replicate is not implemented yet") }
