package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

var (
	binOnce sync.Once
	binPath string
	binErr  error
	binOut  []byte
	// raceDir holds the race reports of race-built subprocesses (GORACE log_path): one file
	// per process that found a race, named report.<pid>.
	raceDir string
	// raceMu serialises claiming reports, so each is reported once.
	raceMu sync.Mutex
)

// RaceBinaryEnv, set to 0, builds the subprocess binary without -race even under go test
// -race: for a machine too slow for the race-built commands in the subprocess-heavy tests
// (they run several times slower). `make test` leaves it unset.
const RaceBinaryEnv = "TIDEMARK_TEST_RACE_BINARY"

// RaceExitCode is the exit status of a race-built subprocess that found a data race: GORACE
// makes it stop at the first one (halt_on_error=1) with this code.
const RaceExitCode = 66

// Binary builds the tidemark command once per test binary and returns its path, for tests
// that run it as a subprocess (to kill -9 it, send it SIGTERM, or check its exit code).
//
// When the test binary runs under the race detector (go test -race, as `make test` does), the
// command is built with -race too, and a data race in any subprocess fails the test that
// called Binary: the subprocess writes its report to a file rather than to its stderr (which
// tests parse or discard), exits with RaceExitCode, and a cleanup of the test fails it with the
// report. A test that runs the binary must stop it before it ends, so its reports are its own
// (tests in a package run one after another); a report found when every test is done fails
// the test binary in Main.
func Binary(tb testing.TB) string {
	tb.Helper()
	binOnce.Do(buildBinary)
	if binErr != nil {
		tb.Fatalf("build tidemark: %v\n%s", binErr, binOut)
	}
	if raceDir != "" {
		tb.Cleanup(func() {
			if reports := claimRaceReports(); reports != "" {
				tb.Errorf("a tidemark subprocess found a data race:\n%s", reports)
			}
		})
	}
	return binPath
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
	raceDir = filepath.Join(dir, "race")
	if binErr = os.Mkdir(raceDir, 0o755); binErr != nil {
		return
	}
	// Every subprocess inherits the environment (tests that set cmd.Env start from
	// os.Environ()), so this reaches each one without changing how tests start them. Options
	// the caller set in GORACE come first; ours win where they overlap.
	opts := fmt.Sprintf("log_path=%s halt_on_error=1 exitcode=%d",
		filepath.Join(raceDir, "report"), RaceExitCode)
	if prev := strings.TrimSpace(os.Getenv("GORACE")); prev != "" {
		opts = prev + " " + opts
	}
	binErr = os.Setenv("GORACE", opts)
}

// claimRaceReports returns the race reports written since the last call (empty when none)
// and removes them.
func claimRaceReports() string {
	raceMu.Lock()
	defer raceMu.Unlock()
	entries, err := os.ReadDir(raceDir)
	if err != nil {
		return fmt.Sprintf("read race reports in %s: %v", raceDir, err)
	}
	var b strings.Builder
	for _, e := range entries {
		path := filepath.Join(raceDir, e.Name())
		data, err := os.ReadFile(path)
		if err != nil {
			fmt.Fprintf(&b, "read %s: %v\n", path, err)
			continue
		}
		_ = os.Remove(path)
		if len(strings.TrimSpace(string(data))) > 0 {
			fmt.Fprintf(&b, "%s:\n%s\n", e.Name(), data)
		}
	}
	return b.String()
}

// moduleRoot is the repository root, found from this source file's location.
func moduleRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}
