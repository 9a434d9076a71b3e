package loader_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/tidemark/tidemark/internal/testenv"
)

// tidemark runs the built binary with stdin and returns stdout, stderr and the exit status.
func tidemark(t *testing.T, dir string, stdin io.Reader, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(testenv.Binary(t), args...)
	cmd.Dir = dir
	cmd.Stdin = stdin
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatal(err)
	}
	return stdout.String(), stderr.String(), cmd.ProcessState.ExitCode()
}

type summary struct {
	Inserted, Updated, Unchanged, Deleted, Rejected, Duplicates int64
	Seconds                                                     float64
	RowsPerSecond                                               float64 `json:"rows_per_second"`
	RejectsFile                                                 string  `json:"rejects_file"`
}

func parseSummary(t *testing.T, stdout string) summary {
	t.Helper()
	// stdout holds the JSON object alone: `load --json > out.json` must be valid JSON.
	var s summary
	dec := json.NewDecoder(strings.NewReader(stdout))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		t.Fatalf("stdout is not the JSON summary: %v\n%s", err, stdout)
	}
	if dec.More() {
		t.Fatalf("stdout holds more than one JSON value:\n%s", stdout)
	}
	return s
}

func countProducts(t *testing.T, pool *pgxpool.Pool) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), "SELECT count(*) FROM products").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestCommandFormatsAndJSON(t *testing.T) {
	pool, url := newDB(t)
	dir := t.TempDir()
	csvDrop := "sku,name,price\nA,Apple,1.50\nB,Banana,x\n"
	ndjsonDrop := `{"sku":"A","name":"Apple","price":1.5}` + "\n" + `{"sku":"C","name":"Cherry"}` + "\n"

	// gzip on stdin: detected by its magic bytes, CSV by default.
	stdout, stderr, code := tidemark(t, dir, bytes.NewReader(gz(t, []byte(csvDrop))), "load", "--pg-url", url, "--supplier", "3", "--json", "-")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	s := parseSummary(t, stdout)
	if s.Inserted != 1 || s.Rejected != 1 || s.RejectsFile == "" || !filepath.IsAbs(s.RejectsFile) {
		t.Fatalf("summary %+v", s)
	}
	// Without --rejects, a default file in the current directory, named in the summary.
	if filepath.Dir(s.RejectsFile) != dir && !strings.HasSuffix(filepath.Dir(s.RejectsFile), filepath.Base(dir)) {
		t.Errorf("default rejects file %s is not in the current directory %s", s.RejectsFile, dir)
	}
	if !strings.Contains(stderr, s.RejectsFile) || !strings.Contains(stderr, "1 inserted") {
		t.Errorf("human summary on stderr lacks the counts or the rejects file:\n%s", stderr)
	}
	b, err := os.ReadFile(s.RejectsFile)
	if err != nil {
		t.Fatal(err)
	}
	var reject struct {
		Line   int
		Reason string
		Record map[string]string
	}
	if err := json.Unmarshal(b, &reject); err != nil || reject.Line != 3 || !strings.HasPrefix(reject.Reason, "price:") || reject.Record["sku"] != "B" {
		t.Fatalf("rejects file %q (%v)", b, err)
	}

	// A gzipped NDJSON file, by its extension; an explicit rejects file exists even when empty.
	path := filepath.Join(dir, "drop.jsonl.gz")
	if err := os.WriteFile(path, gz(t, []byte(ndjsonDrop)), 0o644); err != nil {
		t.Fatal(err)
	}
	rejects := filepath.Join(dir, "r.ndjson")
	stdout, stderr, code = tidemark(t, dir, nil, "load", "--pg-url", url, "--supplier", "3", "--json", "--rejects", rejects, path)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if s := parseSummary(t, stdout); s.Inserted != 1 || s.Unchanged != 1 || s.Rejected != 0 || s.RejectsFile != rejects {
		t.Fatalf("summary %+v", s)
	}
	if st, err := os.Stat(rejects); err != nil || st.Size() != 0 {
		t.Fatalf("explicit rejects file: %v, %v", st, err)
	}
	if n := countProducts(t, pool); n != 2 {
		t.Fatalf("%d products, want 2", n)
	}
}

func TestCommandFailures(t *testing.T) {
	pool, url := newDB(t)
	dir := t.TempDir()
	for _, tc := range []struct {
		name  string
		input string
		args  []string
		code  int
		want  string
	}{
		{"unknown column", "sku,name,colour\nA,a,red\n", nil, 1, `unknown column "colour"`},
		{"too many rejects", "sku,name\nA,\nB,\n", []string{"--max-rejects", "1"}, 3, "too many rejected records"},
		{"full refused", "sku,name\nZ,z\n", []string{"--full"}, 4, "more than half"},
		{"bad format", "sku,name\n", []string{"--format", "xml"}, 1, `--format "xml"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "full refused" {
				if _, _, code := tidemark(t, dir, strings.NewReader("sku,name\nA,a\nB,b\nC,c\n"), "load", "--pg-url", url, "--supplier", "5", "-"); code != 0 {
					t.Fatal("seed load failed")
				}
			}
			before := countProducts(t, pool)
			args := append([]string{"load", "--pg-url", url, "--supplier", "5", "--json"}, tc.args...)
			stdout, stderr, code := tidemark(t, dir, strings.NewReader(tc.input), append(args, "-")...)
			if code != tc.code || !strings.Contains(stderr, tc.want) {
				t.Fatalf("exit %d, stderr %q; want exit %d and %q", code, stderr, tc.code, tc.want)
			}
			if stdout != "" {
				t.Errorf("a failed load printed on stdout: %q", stdout)
			}
			if after := countProducts(t, pool); after != before {
				t.Errorf("a failed load changed the product count from %d to %d", before, after)
			}
		})
	}
}

// TestKilledLoadLeavesNothingBehind kills the loader with SIGKILL, or stops it with SIGTERM, in
// the middle of its COPY and checks that the transaction left nothing: no products, no
// supplier, no partition, no lock.
func TestKilledLoadLeavesNothingBehind(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGKILL, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) { interruptLoad(t, sig) })
	}
}

func interruptLoad(t *testing.T, sig syscall.Signal) {
	pool, url := newDB(t)
	ctx := testenv.Context(t, 2*time.Minute)
	cmd := exec.Command(testenv.Binary(t), "load", "--pg-url", url, "--supplier", "11", "-")
	tmp := t.TempDir()
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })

	// Feed rows until PostgreSQL reports the COPY under way, and keep the pipe open: the load
	// is then certainly half-way.
	w := bufio.NewWriter(stdin)
	fmt.Fprintln(w, "sku,name,price")
	copying := false
	for i := 0; !copying; i++ {
		for j := 0; j < 5000; j++ {
			fmt.Fprintf(w, "K%d-%d,name %d,1.00\n", i, j, j)
		}
		if err := w.Flush(); err != nil {
			t.Fatalf("write to the loader: %v (stderr: %s)", err, stderr.String())
		}
		if err := pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_stat_progress_copy c
			JOIN pg_stat_activity a USING (pid) WHERE a.application_name = 'tidemark' AND c.tuples_processed > 0)`).Scan(&copying); err != nil {
			t.Fatal(err)
		}
		if i > 2000 {
			t.Fatal("the COPY never showed up in pg_stat_progress_copy")
		}
	}
	if err := cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if sig == syscall.SIGTERM {
		// Stopped, not finished: a non-zero exit that says so.
		if code := cmd.ProcessState.ExitCode(); code != 1 || !strings.Contains(stderr.String(), "interrupted; nothing was written") {
			t.Errorf("after SIGTERM: exit %d, stderr %q", code, stderr.String())
		}
	}

	// The server notices the lost client and rolls back; wait for its backend to go.
	for {
		var n int
		if err := pool.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'tidemark'").Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	var products, suppliers, partitions int
	if err := pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM products), (SELECT count(*) FROM suppliers),
		(SELECT count(*) FROM pg_inherits WHERE inhparent = 'products'::regclass)`).Scan(&products, &suppliers, &partitions); err != nil {
		t.Fatal(err)
	}
	if products != 0 || suppliers != 0 || partitions != 0 {
		t.Fatalf("a killed load left %d products, %d suppliers, %d partitions", products, suppliers, partitions)
	}
	// Nor a file: the direct COPY's spill file exists from the start of the load.
	if left, err := os.ReadDir(tmp); err != nil || len(left) != 0 {
		t.Fatalf("a killed load left %d files in TMPDIR (%v)", len(left), err)
	}
	// And the supplier is not locked: the next load goes through.
	if _, stderr, code := tidemark(t, t.TempDir(), strings.NewReader("sku,name\nA,a\n"), "load", "--pg-url", url, "--supplier", "11", "-"); code != 0 {
		t.Fatalf("load after the kill: exit %d: %s", code, stderr)
	}
}
