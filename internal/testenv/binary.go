package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
)

var (
	binOnce sync.Once
	binPath string
	binErr  error
	binOut  []byte
	// raceOpts is the GORACE every race-built subprocess runs with, but for its log_path: the
	// caller's options, then halt_on_error and the exit code. Empty when the binary is plain.
	raceOpts string
	// raceMu guards wrappers and serialises claiming reports, so each is reported once.
	raceMu sync.Mutex
	// wrappers is, per test, the directory its subprocesses write their race reports to (one
	// file per process that found a race, named report.<pid>) beside the script that runs the
	// binary with that log_path.
	wrappers = map[testing.TB]string{}
)

// RaceBinaryEnv, set to 0, builds the subprocess binary without -race even under go test
// -race: for a machine too slow for the race-built commands in the subprocess-heavy tests
// (they run several times slower). `make test` leaves it unset.
const RaceBinaryEnv = "TIDEMARK_TEST_RACE_BINARY"

// RaceExitCode is the exit status of a race-built subprocess that found a data race: GORACE
// makes it stop at the first one (halt_on_error=1) with this code.
const RaceExitCode = 66

// Binary builds the tidemark command once per test binary and returns the path to run it by,
// for tests that run it as a subprocess (to kill -9 it, send it SIGTERM, or check its exit
// code).
//
// When the test binary runs under the race detector (go test -race, as `make test` does), the
// command is built with -race too, and a data race in any subprocess fails the test that
// called Binary: the subprocess writes its report to a file rather than to its stderr (which
// tests parse or discard), exits with RaceExitCode, and a cleanup of the test fails it with the
// report. The path returned is then a script of the test's own that sets GORACE and execs the
// binary (same process, so signals reach the command), so that each test's reports land in a
// directory of its own and stay its own when tests run in parallel. A test must stop what it
// started before it ends; a report found when every test is done (of a subprocess that
// outlived its test) fails the test binary in Main.
func Binary(tb testing.TB) string {
	tb.Helper()
	binOnce.Do(buildBinary)
	if binErr != nil {
		tb.Fatalf("build tidemark: %v\n%s", binErr, binOut)
	}
	if raceOpts == "" {
		return binPath
	}
	raceMu.Lock()
	defer raceMu.Unlock()
	dir, ok := wrappers[tb]
	if !ok {
		var err error
		if dir, err = newWrapper(); err != nil {
			tb.Fatalf("race-report wrapper for tidemark: %v", err)
		}
		wrappers[tb] = dir
		tb.Cleanup(func() {
			raceMu.Lock()
			delete(wrappers, tb)
			reports := claimRaceReports(dir)
			raceMu.Unlock()
			if reports != "" {
				tb.Errorf("a tidemark subprocess found a data race:\n%s", reports)
			}
		})
	}
	return filepath.Join(dir, "tidemark")
}

func buildBinary() {
	dir, err := os.MkdirTemp("", "tidemark-bin-")
	if err != nil {
		binErr = err
		return
	}
	binPath = filepath.Join(dir, "tidemark")
	race := raceEnabled && os.Getenv(RaceBinaryEnv) != "0"
	args := []string{"build", "-o", binPath}
	if race {
		args = append(args, "-race")
	}
	cmd := exec.Command("go", append(args, "./cmd/tidemark")...)
	cmd.Dir = moduleRoot()
	if binOut, binErr = cmd.CombinedOutput(); binErr != nil || !race {
		return
	}
	// Options the caller set in GORACE come first; ours win where they overlap.
	raceOpts = fmt.Sprintf("halt_on_error=1 exitcode=%d", RaceExitCode)
	if prev := strings.TrimSpace(os.Getenv("GORACE")); prev != "" {
		raceOpts = prev + " " + raceOpts
	}
}

// newWrapper makes a directory beside the binary holding a script, tidemark, that runs the
// binary with GORACE's log_path in that directory. The script replaces itself with the binary
// (exec), so the process a test starts, signals and waits for is the command itself, and the
// environment a test gives it (cmd.Env) still reaches it.
func newWrapper() (string, error) {
	dir, err := os.MkdirTemp(filepath.Dir(binPath), "t-")
	if err != nil {
		return "", err
	}
	script := fmt.Sprintf("#!/bin/sh\nexport GORACE=%s\nexec %s \"$@\"\n",
		shellQuote(raceOpts+" log_path="+filepath.Join(dir, "report")), shellQuote(binPath))
	// Under ForkLock: a goroutine forking while the script is open for writing would leave its
	// child holding it until the child's exec, and running the script meanwhile fails with
	// "text file busy" (golang/go#22315; it failed TestRaceReportsStayWithTheirTest once).
	syscall.ForkLock.RLock()
	err = os.WriteFile(filepath.Join(dir, "tidemark"), []byte(script), 0o755)
	syscall.ForkLock.RUnlock()
	if err != nil {
		return "", err
	}
	return dir, nil
}

// shellQuote quotes s for sh.
func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// claimRaceReports returns the race reports written in dir since the last call (empty when
// none) and removes them. The caller holds raceMu.
func claimRaceReports(dir string) string {
	entries, err := filepath.Glob(filepath.Join(dir, "report.*"))
	if err != nil {
		return fmt.Sprintf("read race reports in %s: %v", dir, err)
	}
	var b strings.Builder
	for _, path := range entries {
		data, err := os.ReadFile(path)
		if err != nil {
			fmt.Fprintf(&b, "read %s: %v\n", path, err)
			continue
		}
		_ = os.Remove(path)
		if len(strings.TrimSpace(string(data))) > 0 {
			fmt.Fprintf(&b, "%s:\n%s\n", filepath.Base(path), data)
		}
	}
	return b.String()
}

// leftoverRaceReports claims the reports of every test's directory: those of subprocesses
// that outlived the test that started them.
func leftoverRaceReports() string {
	if raceOpts == "" {
		return ""
	}
	raceMu.Lock()
	defer raceMu.Unlock()
	dirs, _ := filepath.Glob(filepath.Join(filepath.Dir(binPath), "t-*"))
	var b strings.Builder
	for _, dir := range dirs {
		b.WriteString(claimRaceReports(dir))
	}
	return b.String()
}

// moduleRoot is the repository root, found from this source file's location.
func moduleRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}
