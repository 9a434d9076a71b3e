package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
)

var (
	binOnce sync.Once
	binPath string
	binErr  error
	binOut  []byte
)

// Binary builds the tidemark command once per test binary and returns its path, for tests
// that run it as a subprocess (to kill -9 it, send it SIGTERM, or check its exit code).
func Binary(tb testing.TB) string {
	tb.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "tidemark-bin-")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "tidemark")
		cmd := exec.Command("go", "build", "-o", binPath, "./cmd/tidemark")
		cmd.Dir = moduleRoot()
		binOut, binErr = cmd.CombinedOutput()
	})
	if binErr != nil {
		tb.Fatalf("build tidemark: %v\n%s", binErr, binOut)
	}
	return binPath
}

// moduleRoot is the repository root, found from this source file's location.
func moduleRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}
