//go:build race

package testenv

// raceEnabled: this test binary runs under the race detector, so the tidemark binary it runs
// as a subprocess is race-built too.
const raceEnabled = true
