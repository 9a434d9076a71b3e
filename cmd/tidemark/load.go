package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/tidemark/tidemark/loader"
)

// Exit statuses of `tidemark load` beyond 0 (loaded) and 1 (failed), so scripts can tell a bad
// drop from a broken run. Nothing is written in either case.
const (
	exitTooManyRejects = 3
	exitFullRefused    = 4
)

// LoadCmd is `tidemark load --supplier ID [flags] FILE|-`.
type LoadCmd struct {
	Supplier   int32  `required:"" help:"Supplier the drop belongs to (its partition is created when missing)."`
	File       string `arg:"" help:"The drop: a CSV or NDJSON file, maybe gzipped, or - for standard input."`
	Format     string `env:"TIDEMARK_LOAD_FORMAT" help:"Input format, csv or ndjson (default: from the file extension; CSV for standard input)."`
	Rejects    string `type:"path" help:"Write rejected records here as NDJSON (default: rejects-s<ID>-<time>.ndjson in the current directory, created when there is a reject)."`
	MaxRejects int    `default:"-1" help:"Fail, writing nothing, when more records than this are rejected (-1: no limit)."`
	Full       bool   `help:"The drop is the supplier's whole catalogue: delete its products whose sku the drop lacks."`
	Force      bool   `help:"With --full, allow deleting more than half of the supplier's products."`
	JSON       bool   `help:"Print the counts as one JSON object on standard output."`
	profileFlag
}

// loadSummary is the --json output.
type loadSummary struct {
	loader.Result
	RejectsFile string `json:"rejects_file"`
}

// Run loads the drop in one transaction and reports what it did.
func (c *LoadCmd) Run(ctx context.Context, g *Globals, log *slog.Logger) error {
	stopProfile, err := c.startProfile()
	if err != nil {
		return err
	}
	defer stopProfile()
	format, err := c.format()
	if err != nil {
		return err
	}
	in, size, name, err := c.open()
	if err != nil {
		return err
	}
	defer in.Close()

	src, stopProgress := readProgress(name, size, in)
	defer stopProgress()

	rd, err := loader.Open(src, format)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	rejects := &rejectsFile{path: c.Rejects}
	if rejects.path == "" {
		rejects.path = fmt.Sprintf("rejects-s%d-%s.ndjson", c.Supplier, time.Now().UTC().Format("20060102T150405Z"))
		rejects.fallback = true
	} else if err := rejects.open(); err != nil { // an explicit file always exists afterwards
		return err
	}
	defer rejects.Close()

	pool, err := g.Pool(ctx, log)
	if err != nil {
		return err
	}
	abandoned := false // the load did not return in time after a signal: its connection is in use
	defer func() {
		if !abandoned {
			pool.Close()
		}
	}()

	type outcome struct {
		res loader.Result
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		res, err := loader.Load(ctx, pool, rd, loader.Options{
			Supplier:   c.Supplier,
			Full:       c.Full,
			Force:      c.Force,
			MaxRejects: c.MaxRejects,
			Rejects:    rejects,
			Log:        log,
		})
		done <- outcome{res, err}
	}()
	var out outcome
	select {
	case out = <-done:
	case <-ctx.Done():
		// Stopped by a signal. The load rolls back as soon as it notices, but its reader may
		// be blocked on an input that sends nothing more (a stalled pipe): do not wait for
		// ever. Exiting closes the connection, and the server rolls back what is not committed.
		select {
		case out = <-done:
		case <-time.After(5 * time.Second):
			abandoned = true
			return exitCode{1, fmt.Sprintf("load of %s interrupted; nothing was written", name)}
		}
	}
	res, err := out.res, out.err
	if cerr := rejects.Close(); err == nil && cerr != nil {
		err = cerr
	}
	stopProgress() // before the summary, so the two do not interleave
	if err != nil {
		if ctx.Err() != nil {
			// Interrupted: not the clean exit a stopped service makes.
			return exitCode{1, fmt.Sprintf("load of %s interrupted; nothing was written", name)}
		}
		where := ""
		if rejects.created {
			where = "; rejected records are in " + rejects.path
		}
		switch {
		case errors.Is(err, loader.ErrTooManyRejects):
			return exitCode{exitTooManyRejects, fmt.Sprintf("%s: %v; nothing was written%s", name, err, where)}
		case errors.Is(err, loader.ErrFullWouldDeleteTooMuch):
			return exitCode{exitFullRefused, fmt.Sprintf("%s: %v; nothing was written", name, err)}
		}
		return fmt.Errorf("load %s: %w; nothing was written%s", name, err, where)
	}

	sum := loadSummary{Result: res}
	if rejects.created {
		sum.RejectsFile = rejects.path
	}
	fmt.Fprintf(os.Stderr, "loaded %s into supplier %d in %.1fs (%.0f records/s): %d inserted, %d updated, %d unchanged, %d deleted, %d duplicates, %d rejected\n",
		name, c.Supplier, res.Seconds, res.RowsPerSecond, res.Inserted, res.Updated, res.Unchanged, res.Deleted, res.Duplicates, res.Rejected)
	if rejects.created {
		fmt.Fprintf(os.Stderr, "rejected records (line, reason, record) are in %s\n", rejects.path)
	}
	if c.JSON {
		return json.NewEncoder(os.Stdout).Encode(sum)
	}
	return nil
}

func (c *LoadCmd) format() (loader.Format, error) {
	switch c.Format {
	case "csv", "ndjson":
		return loader.Format(c.Format), nil
	case "":
	default:
		return "", fmt.Errorf("--format %q: want csv or ndjson", c.Format)
	}
	if c.File == "-" {
		return loader.CSV, nil
	}
	if f, ok := loader.FormatOf(c.File); ok {
		return f, nil
	}
	return "", fmt.Errorf("%s: cannot tell the format from the name (want .csv, .ndjson or .jsonl, maybe .gz): give --format", c.File)
}

// open returns the input, its size in bytes (0 when unknown) and its name for messages.
func (c *LoadCmd) open() (io.ReadCloser, int64, string, error) {
	if c.File == "-" {
		return io.NopCloser(os.Stdin), 0, "stdin", nil
	}
	f, err := os.Open(c.File)
	if err != nil {
		return nil, 0, "", fmt.Errorf("open drop: %w", err)
	}
	var size int64
	if st, err := f.Stat(); err == nil && st.Mode().IsRegular() {
		size = st.Size()
	}
	return f, size, filepath.Base(c.File), nil
}

// rejectsFile is created on the first reject (or up front when named explicitly), so a clean
// load leaves no empty file behind.
type rejectsFile struct {
	path     string
	fallback bool // a default name: fall back to the temp directory when here is read-only
	f        *os.File
	created  bool
}

func (r *rejectsFile) open() error {
	f, err := os.Create(r.path)
	if err != nil && r.fallback {
		r.path = filepath.Join(os.TempDir(), filepath.Base(r.path))
		f, err = os.Create(r.path)
	}
	if err != nil {
		return fmt.Errorf("create rejects file: %w", err)
	}
	if abs, err := filepath.Abs(r.path); err == nil {
		r.path = abs
	}
	r.f, r.created = f, true
	return nil
}

func (r *rejectsFile) Write(p []byte) (int, error) {
	if !r.created {
		if err := r.open(); err != nil {
			return 0, err
		}
	}
	return r.f.Write(p)
}

func (r *rejectsFile) Close() error {
	if r.f == nil {
		return nil
	}
	err := r.f.Close()
	r.f = nil
	if err != nil && !errors.Is(err, os.ErrClosed) {
		return fmt.Errorf("close rejects file: %w", err)
	}
	return nil
}
