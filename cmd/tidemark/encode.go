package main

import "errors"

// EncodeCmd is `tidemark encode`; it is being built (issue 5).
type EncodeCmd struct{}

// Run reports that the command does not exist yet.
func (c *EncodeCmd) Run() error { return errors.New("tidemark encode is not implemented yet") }
