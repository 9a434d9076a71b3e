package main

import "errors"

// SearchCmd is `tidemark search`; it is being built (issue 5).
type SearchCmd struct{}

// Run reports that the command does not exist yet.
func (c *SearchCmd) Run() error { return errors.New("tidemark search is not implemented yet") }
