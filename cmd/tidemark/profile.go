package main

import (
	"fmt"
	"os"
	"runtime/pprof"
)

// profileFlag is the hidden --cpuprofile of load, replicate and encode, for the benchmark.
type profileFlag struct {
	CPUProfile string `name:"cpuprofile" hidden:"" type:"path" help:"Write a CPU profile of the run to this file (for the benchmark)."`
}

// startProfile profiles the process until the returned function is called; without the flag
// it does nothing.
func (p profileFlag) startProfile() (func(), error) {
	if p.CPUProfile == "" {
		return func() {}, nil
	}
	f, err := os.Create(p.CPUProfile)
	if err != nil {
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		_ = f.Close()
	}, nil
}
