//go:build race

package testenv

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// recordingTB is a test as Binary sees it, whose failures and cleanups the test inspects.
type recordingTB struct {
	testing.TB
	mu       sync.Mutex
	errs     []string
	cleanups []func()
}

func (r *recordingTB) Helper() {}

func (r *recordingTB) Cleanup(f func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cleanups = append(r.cleanups, f)
}

func (r *recordingTB) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

// end runs the cleanups, last first, as the testing package does when a test ends.
func (r *recordingTB) end() {
	for i := len(r.cleanups) - 1; i >= 0; i-- {
		r.cleanups[i]()
	}
}

// TestRaceReportsStayWithTheirTest: two tests run a race-built subprocess at the same time, and
// one of them races. Only that test fails with the report, whichever test ends first.
func TestRaceReportsStayWithTheirTest(t *testing.T) {
	dir := t.TempDir()
	prog := `package main

import (
	"os"
	"time"
)

func main() {
	if os.Args[1] == "race" {
		x := 0
		done := make(chan bool)
		go func() { x++; done <- true }()
		x++
		<-done
	}
	time.Sleep(300 * time.Millisecond)
}
`
	for name, data := range map[string]string{"main.go": prog, "go.mod": "module racy\n\ngo 1.22\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	build := exec.Command("go", "build", "-race", "-o", "racy", ".")
	build.Dir = dir
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the racy program: %v\n%s", err, out)
	}
	// The racy program stands in for the tidemark binary.
	binOnce.Do(func() {})
	prevPath, prevOpts := binPath, raceOpts
	binPath, raceOpts = filepath.Join(dir, "racy"), fmt.Sprintf("halt_on_error=1 exitcode=%d", RaceExitCode)
	t.Cleanup(func() { binPath, raceOpts = prevPath, prevOpts })

	racy, clean := &recordingTB{TB: t}, &recordingTB{TB: t}
	var wg sync.WaitGroup
	exits := map[*recordingTB]error{}
	var mu sync.Mutex
	for tb, arg := range map[*recordingTB]string{racy: "race", clean: "calm"} {
		path := Binary(tb)
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := exec.Command(path, arg).Run()
			mu.Lock()
			exits[tb] = err
			mu.Unlock()
		}()
	}
	wg.Wait()
	var exit *exec.ExitError
	if err := exits[racy]; !errors.As(err, &exit) || exit.ExitCode() != RaceExitCode {
		t.Fatalf("the racy subprocess exited with %v, want status %d: GORACE did not reach it", err, RaceExitCode)
	}
	if err := exits[clean]; err != nil {
		t.Fatalf("the calm subprocess: %v", err)
	}
	// The calm test ends first: it must not take the other's report.
	clean.end()
	racy.end()
	if len(clean.errs) != 0 {
		t.Errorf("the test whose subprocess did not race failed: %q", clean.errs)
	}
	if len(racy.errs) != 1 || !strings.Contains(racy.errs[0], "WARNING: DATA RACE") {
		t.Errorf("the test whose subprocess raced: %q, want one failure with the report", racy.errs)
	}
	if left := leftoverRaceReports(); left != "" {
		t.Errorf("reports left for Main: %s", left)
	}
}
