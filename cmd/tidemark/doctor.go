package main

import "errors"

// DoctorCmd is `tidemark doctor`; it is being built (issue 6).
type DoctorCmd struct{}

// Run reports that the command does not exist yet.
func (c *DoctorCmd) Run() error { return errors.New("tidemark doctor is not implemented yet") }
