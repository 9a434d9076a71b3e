package main

import "errors"

// SnapshotCmd is `tidemark snapshot`; it is being built (issue 7).
type SnapshotCmd struct{}

// Run reports that the command does not exist yet.
func (c *SnapshotCmd) Run() error { return errors.New("tidemark snapshot is not implemented yet") }
