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
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/tidemark/tidemark/catalog"
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
	Supplier   int32  `help:"Supplier the drop belongs to (its partition is created when missing); required unless --detect."`
	File       string `arg:"" help:"The drop: a CSV, NDJSON or XLSX file, maybe gzipped (not XLSX), or - for standard input."`
	Format     string `env:"TIDEMARK_LOAD_FORMAT" help:"Input format, csv, ndjson or xlsx (default: the profile's, else from the file extension; CSV for standard input)."`
	Rejects    string `type:"path" help:"Write rejected records here as NDJSON (default: rejects-s<ID>-<time>.ndjson in the current directory, created when there is a reject)."`
	MaxRejects int    `default:"-1" help:"Fail, writing nothing, when more records than this are rejected (-1: no limit)."`
	Full       bool   `help:"The drop is the supplier's whole catalogue: delete its products whose sku the drop lacks."`
	Force      bool   `help:"With --full, allow deleting more than half of the supplier's products."`
	JSON       bool   `help:"Print the counts as one JSON object on standard output."`
	Detect     bool   `help:"Print the drop's format, encoding, delimiter and header and a suggested drop profile (YAML, on standard output); load nothing."`
	Profile    string `type:"path" placeholder:"FILE" help:"Read the drop with this drop profile (YAML) instead of the supplier's stored one."`
	dropFlags
	profileFlag
}

// dropFlags are the keys of a drop profile as flags: each overrides the profile for one load.
type dropFlags struct {
	Sheet     string   `help:"XLSX: the sheet to read (default: the first)."`
	Delimiter string   `help:"CSV field delimiter: one character such as , ; | or tab (default ,)."`
	Quote     string   `help:"CSV quote character (default \")."`
	Encoding  string   `help:"The drop's encoding: utf-8, windows-1252, iso-8859-1, iso-8859-15 or utf-16 (with a byte-order mark). Unset, a drop that is not UTF-8 stops the load."`
	Decimal   string   `help:"Decimal separator of prices: . or , (default .)."`
	Thousands string   `help:"Thousands separator of prices: . , ' or a space (default: none)."`
	Column    []string `sep:"none" placeholder:"SOURCE=COLUMN" help:"Read the drop's column SOURCE as tidemark's COLUMN (repeatable)."`
	Ignore    []string `sep:"none" placeholder:"SOURCE" help:"Leave the drop's column SOURCE out (repeatable)."`
	Attribute []string `sep:"none" placeholder:"SOURCE=KEY" help:"Gather the drop's column SOURCE into attributes under KEY (repeatable)."`
	Constant  []string `sep:"none" placeholder:"COLUMN=VALUE" help:"Fill tidemark's COLUMN with VALUE where the drop leaves it empty (repeatable)."`
	SKUPrefix string   `name:"sku-prefix" help:"Prepend this to every sku."`
	SKUTrim   bool     `name:"sku-trim" help:"Remove white space around each sku."`
}

// profile is the flags as a profile, to lay over the stored one.
func (f dropFlags) profile(format string) (loader.Profile, error) {
	p := loader.Profile{Format: loader.Format(format), Sheet: f.Sheet, Delimiter: f.Delimiter, Quote: f.Quote,
		Encoding: f.Encoding, Decimal: f.Decimal, Thousands: f.Thousands, Ignore: f.Ignore,
		SKUPrefix: f.SKUPrefix, SKUTrim: f.SKUTrim}
	pairs := func(flag string, vals []string) (map[string]string, error) {
		if len(vals) == 0 {
			return nil, nil
		}
		m := map[string]string{}
		for _, v := range vals {
			k, val, ok := strings.Cut(v, "=")
			if !ok || k == "" {
				return nil, fmt.Errorf("--%s %q: want NAME=VALUE", flag, v)
			}
			m[k] = val
		}
		return m, nil
	}
	var err error
	if p.Columns, err = pairs("column", f.Column); err != nil {
		return p, err
	}
	if p.Attributes, err = pairs("attribute", f.Attribute); err != nil {
		return p, err
	}
	if p.Constants, err = pairs("constant", f.Constant); err != nil {
		return p, err
	}
	return p, nil
}

// loadSummary is the --json output.
type loadSummary struct {
	loader.Result
	RejectsFile string `json:"rejects_file"`
}

// Run loads the drop in one transaction and reports what it did.
func (c *LoadCmd) Run(ctx context.Context, g *Globals, log *slog.Logger) error {
	if c.Detect {
		return c.detect()
	}
	if c.Supplier == 0 {
		return errors.New("--supplier is required (unless --detect)")
	}
	stopProfile, err := c.startProfile()
	if err != nil {
		return err
	}
	defer stopProfile()
	if _, err := c.format(""); err != nil && c.Format != "" {
		return err
	}
	oneOff, err := c.dropFlags.profile(c.Format)
	if err != nil {
		return err
	}
	if err := oneOff.Validate(); err != nil {
		return fmt.Errorf("flags: %w", err)
	}

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
	profile, err := c.dropProfile(ctx, pool, log)
	if err != nil {
		return err
	}
	profile = profile.Override(oneOff)
	if profile.Format, err = c.format(profile.Format); err != nil {
		return err
	}
	in, size, name, err := c.open()
	if err != nil {
		return err
	}
	defer in.Close()

	var src io.Reader = in
	stopProgress := func() {}
	if profile.Format != loader.XLSX { // an XLSX file is read with random access, not as a stream
		src, stopProgress = readProgress(name, size, in)
	}
	defer stopProgress()

	rd, err := loader.OpenProfile(src, profile)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if closer, ok := rd.(io.Closer); ok {
		defer closer.Close()
	}
	rejects := &rejectsFile{path: c.Rejects}
	if rejects.path == "" {
		rejects.path = fmt.Sprintf("rejects-s%d-%s.ndjson", c.Supplier, time.Now().UTC().Format("20060102T150405Z"))
		rejects.fallback = true
	} else if err := rejects.open(); err != nil { // an explicit file always exists afterwards
		return err
	}
	defer rejects.Close()

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

// format is --format, else the profile's, else the file's extension, else CSV for standard input.
func (c *LoadCmd) format(fromProfile loader.Format) (loader.Format, error) {
	switch f := loader.Format(c.Format); f {
	case loader.CSV, loader.NDJSON, loader.XLSX:
		return f, nil
	case "":
	default:
		return "", fmt.Errorf("--format %q: want csv, ndjson or xlsx", c.Format)
	}
	if fromProfile != "" {
		return fromProfile, nil
	}
	if c.File == "-" {
		return loader.CSV, nil
	}
	if strings.HasSuffix(strings.ToLower(c.File), ".xlsx") {
		return loader.XLSX, nil
	}
	if f, ok := loader.FormatOf(c.File); ok {
		return f, nil
	}
	return "", fmt.Errorf("%s: cannot tell the format from the name (want .csv, .ndjson, .jsonl or .xlsx, maybe .gz): give --format or set format: in the supplier's drop profile", c.File)
}

// dropProfile is the profile to read the drop with: --profile's file, else the supplier's
// stored one, else none (tidemark's own drop).
func (c *LoadCmd) dropProfile(ctx context.Context, pool *pgxpool.Pool, log *slog.Logger) (loader.Profile, error) {
	if c.Profile != "" {
		p, err := readProfileFile(c.Profile)
		if err != nil {
			return loader.Profile{}, err
		}
		log.Info("drop profile", "from", c.Profile)
		return p, nil
	}
	text, ok, err := catalog.DropProfile(ctx, pool, c.Supplier)
	if err != nil || !ok {
		return loader.Profile{}, err
	}
	p, err := loader.ParseProfile(strings.NewReader(text))
	if err != nil {
		return loader.Profile{}, fmt.Errorf("the stored drop profile of supplier %d: %w (fix it with tidemark supplier profile set)", c.Supplier, err)
	}
	log.Info("drop profile", "from", fmt.Sprintf("supplier %d", c.Supplier))
	return p, nil
}

// readProfileFile reads and checks a profile file (- for standard input).
func readProfileFile(path string) (loader.Profile, error) {
	text, err := readSmallFile(path)
	if err != nil {
		return loader.Profile{}, err
	}
	p, err := loader.ParseProfile(strings.NewReader(text))
	if err != nil {
		return loader.Profile{}, fmt.Errorf("%s: %w", path, err)
	}
	return p, nil
}

// maxProfileSize bounds a profile file: a profile is a few lines.
const maxProfileSize = 1 << 20

func readSmallFile(path string) (string, error) {
	var r io.Reader = os.Stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return "", fmt.Errorf("open profile: %w", err)
		}
		defer f.Close()
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, maxProfileSize+1))
	if err != nil {
		return "", fmt.Errorf("read profile: %w", err)
	}
	if len(b) > maxProfileSize {
		return "", fmt.Errorf("%s: a profile is at most %d bytes", path, maxProfileSize)
	}
	return string(b), nil
}

// detect prints a proposed profile for the drop, touching no database.
func (c *LoadCmd) detect() error {
	in, _, name, err := c.open()
	if err != nil {
		return err
	}
	defer in.Close()
	d, err := loader.Detect(in)
	if err != nil {
		return fmt.Errorf("detect %s: %w", name, err)
	}
	_, err = io.WriteString(os.Stdout, d.YAML())
	return err
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
