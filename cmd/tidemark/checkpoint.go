package main

import "errors"

// CheckpointCmd is `tidemark checkpoint`; it is being built (issue 4).
type CheckpointCmd struct{}

// Run reports that the command does not exist yet.
func (c *CheckpointCmd) Run() error { return errors.New("tidemark checkpoint is not implemented yet") }
