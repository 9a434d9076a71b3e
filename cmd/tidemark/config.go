package main

import "errors"

// ConfigCmd is `tidemark config`; it is being built (issue 6).
type ConfigCmd struct{}

// Run reports that the command does not exist yet.
func (c *ConfigCmd) Run() error { return errors.New("tidemark config is not implemented yet") }
