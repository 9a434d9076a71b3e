package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/tidemark/tidemark/internal/testenv"
)

// runDemo runs the built binary's demo with a temp dir of its own (TMPDIR), and returns its
// stdout, stderr, exit status and that temp dir.
func runDemo(t *testing.T, env []string, args ...string) (stdout, stderr string, code int, tmp string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd, tmp := demoCommand(ctx, t, env, args...)
	stdout, stderr, code = runCommand(t, cmd)
	return stdout, stderr, code, tmp
}

// demoCommand is the demo command with a temp dir of its own (TMPDIR), which it returns.
func demoCommand(ctx context.Context, t *testing.T, env []string, args ...string) (*exec.Cmd, string) {
	t.Helper()
	// Not t.TempDir(): the throw-away cluster runs as the postgres OS user when we are root,
	// and must be able to reach its directory.
	tmp, err := os.MkdirTemp("", "tidemark-demo-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(tmp) })
	if err := os.Chmod(tmp, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, testenv.Binary(t), append([]string{"demo"}, args...)...)
	cmd.Env = append(append(os.Environ(), "TMPDIR="+tmp), env...)
	return cmd, tmp
}

// assertEmptyDir checks the demo left nothing behind in its temp dir.
func assertEmptyDir(t *testing.T, dir string) {
	t.Helper()
	left, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range left {
		t.Errorf("demo left %s behind in its temp dir", e.Name())
	}
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatalf("%q: %v", s, err)
	}
	return n
}

func TestDemo(t *testing.T) {
	t.Parallel()
	stdout, stderr, code, tmp := runDemo(t, nil, "--products", "500")
	if code != 0 {
		t.Fatalf("demo exited %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	t.Logf("report:\n%s", stdout)
	if strings.Contains(stdout, "level=") {
		t.Errorf("log lines on stdout:\n%s", stdout)
	}

	// Rows loaded per supplier add up to the products asked for.
	loaded := regexp.MustCompile(`(?m)^  supplier (\d) .* (\d+) rows .* rows/s$`).FindAllStringSubmatch(stdout, -1)
	if len(loaded) != 3 {
		t.Fatalf("want 3 supplier load lines, got %d", len(loaded))
	}
	rows := 0
	for _, m := range loaded {
		rows += atoi(t, m[2])
	}
	if rows != 500 {
		t.Errorf("loaded %d rows, want 500", rows)
	}

	// Every insert, update and delete was published.
	ev := regexp.MustCompile(`Replicated: (\d+) events published \((\d+) insert, (\d+) update, (\d+) delete\); stream PRODUCTS holds (\d+) messages`).FindStringSubmatch(stdout)
	if ev == nil {
		t.Fatal("no Replicated line")
	}
	if atoi(t, ev[2]) != 500 || atoi(t, ev[3]) == 0 || atoi(t, ev[4]) == 0 || ev[1] != ev[5] {
		t.Errorf("events: %s", ev[0])
	}

	// The vectors match the table: every product has a live vector or a tombstone, and there
	// is a tombstone for every delete.
	vec := regexp.MustCompile(`Vectors \(model hash-v1-384\): (\d+) live, (\d+) deleted; every live product has a current vector`).FindStringSubmatch(stdout)
	if vec == nil {
		t.Fatal("no Vectors line")
	}
	live, deleted := atoi(t, vec[1]), atoi(t, vec[2])
	if live+deleted != 500 || deleted != atoi(t, ev[4]) {
		t.Errorf("vectors: %d live, %d deleted; want 500 in all, %s deleted", live, deleted, ev[4])
	}

	// The sample search has three hits, the best about what was asked.
	hits := regexp.MustCompile(`(?m)^  0\.\d{4}  supplier \d  \S+  (.+)$`).FindAllStringSubmatch(stdout, -1)
	if len(hits) != 3 {
		t.Fatalf("want 3 search hits, got %d", len(hits))
	}
	if !strings.Contains(strings.ToLower(hits[0][1]), "jacket") {
		t.Errorf("best hit for %q is %q", "waterproof hiking jacket", hits[0][1])
	}

	// It stopped with a final checkpoint, and removed its servers' files.
	cp := regexp.MustCompile(`final checkpoint of slot tidemark at (\S+)`).FindStringSubmatch(stdout)
	if cp == nil {
		t.Fatal("no final checkpoint")
	}
	if lsn, err := pglogrepl.ParseLSN(cp[1]); err != nil || lsn == 0 {
		t.Errorf("final checkpoint %q: %v", cp[1], err)
	}
	assertEmptyDir(t, tmp)
}

func TestDemoWithoutPostgres(t *testing.T) {
	t.Parallel()
	empty := t.TempDir()
	stdout, stderr, code, tmp := runDemo(t, []string{"TIDEMARK_PG_BIN=" + empty}, "--products", "100")
	if code == 0 {
		t.Fatalf("demo without PostgreSQL exited 0\n%s", stdout)
	}
	for _, want := range []string{"PostgreSQL server binaries", "apt-get install postgresql", "brew install postgresql"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	if stdout != "" {
		t.Errorf("stdout: %s", stdout)
	}
	assertEmptyDir(t, tmp)
}

// A pipeline that does not catch up in time fails with where it stands, and still cleans up.
func TestDemoTimeout(t *testing.T) {
	t.Parallel()
	stdout, stderr, code, tmp := runDemo(t, nil, "--products", "100", "--timeout", "1ns")
	if code != 1 {
		t.Fatalf("demo exited %d, want 1\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	if !strings.Contains(stderr, "the vectors did not catch up with the table within 1ns: ") {
		t.Errorf("stderr:\n%s", stderr)
	}
	assertEmptyDir(t, tmp)
}

// Interrupted half-way (SIGINT while loading), the demo stops its servers, removes their files
// and exits 1: it did not do its job.
func TestDemoInterrupted(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd, tmp := demoCommand(ctx, t, nil, "--products", "300000")
	var out bytes.Buffer
	cmd.Stdout = &out
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var log strings.Builder
	sc := bufio.NewScanner(stderr)
	signalled := false
	for sc.Scan() {
		log.WriteString(sc.Text() + "\n")
		if !signalled && strings.Contains(sc.Text(), "generating and loading") {
			if err := cmd.Process.Signal(os.Interrupt); err != nil {
				t.Fatal(err)
			}
			signalled = true
		}
	}
	err = cmd.Wait()
	if !signalled {
		t.Fatalf("the demo never started loading:\n%s", log.String())
	}
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("interrupted demo: %v, want exit status 1\n%s", err, log.String())
	}
	if !strings.Contains(log.String(), "demo interrupted; its servers are stopped and their files removed") {
		t.Errorf("stderr:\n%s", log.String())
	}
	if out.Len() != 0 {
		t.Errorf("a report from an interrupted demo:\n%s", out.String())
	}
	assertEmptyDir(t, tmp)
}
