package cpuprofile_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tidemark/tidemark/internal/cpuprofile"
)

func TestStart(t *testing.T) {
	stop, err := cpuprofile.Start("")
	if err != nil {
		t.Fatal(err)
	}
	stop()
	path := filepath.Join(t.TempDir(), "cpu.pprof")
	if stop, err = cpuprofile.Start(path); err != nil {
		t.Fatal(err)
	}
	// A second profile while one runs is refused by the runtime, and the error says which file.
	if _, err := cpuprofile.Start(filepath.Join(t.TempDir(), "second.pprof")); err == nil || !strings.Contains(err.Error(), "second.pprof") {
		t.Fatalf("a second profile at once: %v, want it refused, naming the file", err)
	}
	stop()
	if fi, err := os.Stat(path); err != nil || fi.Size() == 0 {
		t.Fatalf("profile %s: %v, %v", path, fi, err)
	}
	if _, err := cpuprofile.Start(filepath.Join(t.TempDir(), "missing", "cpu.pprof")); err == nil {
		t.Fatal("a profile in a missing directory was not refused")
	}
}
