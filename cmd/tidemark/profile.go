package main

import "github.com/tidemark/tidemark/internal/cpuprofile"

// profileFlag is the hidden --cpuprofile of load, replicate and encode, for the benchmark.
type profileFlag struct {
	CPUProfile string `name:"cpuprofile" hidden:"" type:"path" help:"Write a CPU profile of the run to this file (for the benchmark)."`
}

// startProfile profiles the process until the returned function is called; without the flag
// it does nothing.
func (p profileFlag) startProfile() (func(), error) { return cpuprofile.Start(p.CPUProfile) }
