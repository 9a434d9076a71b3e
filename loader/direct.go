package loader

import (
	"bufio"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"os"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// loadDirect loads a drop into an empty partition: COPY straight into products, the rows set
// aside as possible duplicates staged afterwards and applied over the rows that came first.
func loadDirect(ctx context.Context, tx pgx.Tx, log *slog.Logger, rd Reader, opts Options, res *Result) error {
	spill, err := newSpillFile()
	if err != nil {
		return err
	}
	defer spill.close()
	if err := copyProducts(ctx, tx, rd, opts, spill, res); err != nil {
		return err
	}
	copied := res.valid - spill.rows
	if spill.rows == 0 {
		res.Inserted = copied
		return nil
	}
	if err := spill.rewind(); err != nil {
		return err
	}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{stagingTable}, stagingColumns, spill); err != nil {
		return fmt.Errorf("copy set-aside rows into staging: %w", err)
	}
	// The partition was empty: nothing to delete, whatever --full says.
	side := Result{valid: spill.rows, maybeDups: true}
	sideOpts := opts
	sideOpts.Full = false
	if err := apply(ctx, tx, log, sideOpts, &side); err != nil {
		return err
	}
	// A set-aside row that found its sku already loaded overrode an earlier occurrence.
	res.Inserted = copied + side.Inserted
	res.Duplicates = side.Duplicates + side.Updated + side.Unchanged
	return nil
}

// spillFile holds rows set aside during a direct COPY, as CSV in a temporary file, so memory
// does not grow with the number of duplicates. It is a [pgx.CopyFromSource] when read back.
type spillFile struct {
	f    *os.File
	w    *bufio.Writer
	cw   *csv.Writer
	rows int64
	buf  []string

	cr   *csv.Reader
	vals []any
	err  error
}

func newSpillFile() (*spillFile, error) {
	f, err := os.CreateTemp("", "tidemark-load-*.csv")
	if err != nil {
		return nil, fmt.Errorf("create spill file: %w", err)
	}
	// Unlinked at once: the open descriptor keeps the data, and a load killed with SIGKILL
	// leaves nothing behind in TMPDIR.
	if err := os.Remove(f.Name()); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("unlink spill file: %w", err)
	}
	w := bufio.NewWriterSize(f, 64<<10)
	return &spillFile{f: f, w: w, cw: csv.NewWriter(w), buf: make([]string, 8)}, nil
}

// write appends a row; the first column says which optional fields are NULL.
func (s *spillFile) write(r Row) error {
	nulls := []byte("---")
	opt := func(i int, p *string) string {
		if p == nil {
			nulls[i] = 'n'
			return ""
		}
		return *p
	}
	s.buf[1] = strconv.FormatInt(r.Line, 10)
	s.buf[2], s.buf[3] = r.SKU, r.Name
	s.buf[4], s.buf[5], s.buf[6] = opt(0, r.Description), opt(1, r.Price), opt(2, r.Currency)
	s.buf[7] = r.Status + "\x00" + r.Attributes // NUL cannot occur in a valid row
	s.buf[0] = string(nulls)
	if err := s.cw.Write(s.buf); err != nil {
		return fmt.Errorf("write spill file: %w", err)
	}
	s.rows++
	return nil
}

func (s *spillFile) rewind() error {
	s.cw.Flush()
	if err := s.cw.Error(); err != nil {
		return fmt.Errorf("write spill file: %w", err)
	}
	if _, err := s.f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("rewind spill file: %w", err)
	}
	s.cr = csv.NewReader(bufio.NewReaderSize(s.f, 64<<10))
	s.cr.ReuseRecord = true
	return nil
}

func (s *spillFile) Next() bool {
	rec, err := s.cr.Read()
	if err != nil {
		if !errors.Is(err, io.EOF) {
			s.err = fmt.Errorf("read spill file: %w", err)
		}
		return false
	}
	line, _ := strconv.ParseInt(rec[1], 10, 64)
	nullable := func(i int, v string) any {
		if rec[0][i] == 'n' {
			return nil
		}
		return v
	}
	status, attributes, _ := strings.Cut(rec[7], "\x00")
	s.vals = append(s.vals[:0], line, true, rec[2], rec[3], nullable(0, rec[4]), nullable(1, rec[5]),
		nullable(2, rec[6]), status, attributes)
	return true
}

func (s *spillFile) Values() ([]any, error) { return s.vals, nil }

func (s *spillFile) Err() error { return s.err }

func (s *spillFile) close() { _ = s.f.Close() }

// priceNumeric encodes a validated price for numeric(12,2) in COPY's binary format.
func priceNumeric(p *string) any {
	if p == nil {
		return nil
	}
	s := strings.TrimPrefix(strings.TrimPrefix(*p, "+"), "-")
	intPart, frac, _ := strings.Cut(s, ".")
	frac = strings.TrimRight(frac, "0")
	frac += strings.Repeat("0", 2-len(frac))
	cents, _ := strconv.ParseInt(intPart+frac, 10, 64) // checkPrice bounds it to 12 digits
	return pgtype.Numeric{Int: big.NewInt(cents), Exp: -2, Valid: true}
}
