package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/tidemark/tidemark/config"
	"github.com/tidemark/tidemark/health"
	"github.com/tidemark/tidemark/replication"
	"github.com/tidemark/tidemark/sink"
)

// DoctorCmd is `tidemark doctor`.
type DoctorCmd struct {
	Slot        string        `default:"${slot}" help:"Replication slot to check."`
	Publication string        `default:"${publication}" help:"Publication to check."`
	Stream      string        `default:"${stream}" help:"JetStream stream to check."`
	LagWarn     int64         `default:"1073741824" help:"Warn when the slot retains more WAL than this many bytes."`
	Timeout     time.Duration `default:"30s" help:"Give up on the checks after this long."`
	JSON        bool          `help:"Print the checks as JSON on stdout."`
}

// doctorReport is doctor's --json output.
type doctorReport struct {
	Checks   []health.Check `json:"checks"`
	Failures int            `json:"failures"`
	Warnings int            `json:"warnings"`
}

// Run checks PostgreSQL and NATS and prints one line per check. It exits non-zero when a check
// failed, that is when something would stop the pipeline from running.
func (c *DoctorCmd) Run(ctx context.Context, g *Globals, log *slog.Logger) error {
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	opts := health.Options{Slot: c.Slot, Publication: c.Publication, Stream: c.Stream, LagWarn: c.LagWarn}
	// NATS first: the saved checkpoint tells a dropped slot from one not yet created. Within
	// half the time: a NATS that does not answer must not leave the PostgreSQL checks none,
	// which would then report PostgreSQL down.
	nctx, ncancel := context.WithTimeout(ctx, c.Timeout/2)
	natsChecks, lost := c.nats(nctx, g, log, &opts)
	ncancel()
	checks := append(c.postgres(ctx, g, log, opts, lost), natsChecks...)
	rep := doctorReport{Checks: checks}
	for _, ch := range checks {
		switch ch.Level {
		case health.Fail:
			rep.Failures++
		case health.Warn:
			rep.Warnings++
		}
	}
	if err := printChecks(os.Stdout, rep, c.JSON); err != nil {
		return err
	}
	if rep.Failures > 0 {
		return exitCode{code: 1, msg: fmt.Sprintf("doctor: %d failed checks", rep.Failures)}
	}
	return nil
}

// postgres checks PostgreSQL, and the lost snapshot epochs nats read against the snapshots
// recorded there (lost is nil when they could not be read).
func (c *DoctorCmd) postgres(ctx context.Context, g *Globals, log *slog.Logger, opts health.Options, lost []replication.LostEpoch) []health.Check {
	pool, err := g.Pool(ctx, log)
	if err != nil {
		return []health.Check{{Name: "postgres", Level: health.Fail, Detail: err.Error(),
			Fix: "start PostgreSQL or fix --pg-url / TIDEMARK_PG_URL"}}
	}
	defer pool.Close()
	var version string
	if err := pool.QueryRow(ctx, "SELECT current_setting('server_version')").Scan(&version); err != nil {
		return []health.Check{{Name: "postgres", Level: health.Fail, Detail: err.Error(), Fix: "check the server is healthy"}}
	}
	first := health.Check{Name: "postgres", Level: health.OK, Detail: fmt.Sprintf("PostgreSQL %s at %s", version, hostOf(g.Postgres.URL))}
	checks := append([]health.Check{first}, health.PostgresChecks(ctx, pool, opts)...)
	if lost != nil {
		checks = append(checks, lostEpochsCheck(lostEpochReports(ctx, pool, lost)))
	}
	return checks
}

// lostEpochsCheck warns of the snapshot epochs that lost a chunk while their supplier has not
// been snapshotted since: subscribers and the vector table still hold products deleted while
// their deletes were lost.
func lostEpochsCheck(lost []lostEpochReport) health.Check {
	check := health.Check{Name: "lost_epochs", Level: health.OK}
	var open []string
	suppliers := map[int64]bool{}
	var fix []string
	for _, e := range lost {
		if e.Resnapshot != nil {
			continue
		}
		what := "an unknown supplier"
		if e.Supplier != 0 {
			what = fmt.Sprintf("supplier %d", e.Supplier)
		}
		open = append(open, fmt.Sprintf("%s (epoch %s, chunk lost at %s)", what, e.ID, e.LostLSN))
		if e.Supplier != 0 && !suppliers[e.Supplier] {
			suppliers[e.Supplier] = true
			fix = append(fix, fmt.Sprintf("tidemark snapshot --supplier %d --new-epoch", e.Supplier))
		}
	}
	switch {
	case len(lost) == 0:
		check.Detail = "none saved"
	case len(open) == 0:
		check.Detail = fmt.Sprintf("%d saved, each supplier snapshotted again since", len(lost))
	default:
		check.Level = health.Warn
		check.Detail = fmt.Sprintf("snapshot epochs lost a chunk and their suppliers were not snapshotted since: %s", strings.Join(open, "; "))
		check.Fix = strings.Join(fix, "; ")
		if len(fix) < len(open) {
			check.Fix = strings.TrimPrefix(check.Fix+"; and the suppliers replicate logged for the others, with --new-epoch", "; ")
		}
	}
	return check
}

// nats checks NATS, reads the saved checkpoint into opts and returns the saved lost snapshot
// epochs (nil when they could not be read, which a check then says).
func (c *DoctorCmd) nats(ctx context.Context, g *Globals, log *slog.Logger, opts *health.Options) ([]health.Check, []replication.LostEpoch) {
	nc, err := g.NATSConn(log, "doctor")
	if err != nil {
		return []health.Check{{Name: "nats", Level: health.Fail, Detail: err.Error(),
			Fix: "start NATS or fix --nats-url / TIDEMARK_NATS_URL (and the credentials/TLS flags)"}}, nil
	}
	defer nc.Close()
	first := health.Check{Name: "nats", Level: health.OK, Detail: fmt.Sprintf("nats-server %s at %s", nc.ConnectedServerVersion(), nc.ConnectedUrlRedacted())}
	js, err := jetstream.New(nc)
	if err != nil {
		return []health.Check{first, {Name: "jetstream", Level: health.Fail, Detail: err.Error()}}, nil
	}
	checks := append([]health.Check{first}, health.NATSChecks(ctx, js, *opts)...)
	lsn, err := health.SavedCheckpoint(ctx, js, *opts)
	opts.Checkpoint = lsn
	checks = append(checks, health.CheckpointCheck(*opts, lsn, err))
	if err != nil {
		return checks, nil // the checkpoint check says why
	}
	lost, err := loadSlotRecords(ctx, js, opts)
	if err != nil {
		return append(checks, health.Check{Name: "lost_epochs", Level: health.Warn, Detail: err.Error(),
			Fix: "check nats-server is healthy; a corrupt key stops replicate too (see its error)"}), nil
	}
	return checks, lost
}

// loadSlotRecords reads what replicate saved besides the checkpoint: the origin of the server it was
// taken on, into opts, and the snapshot epochs saved as lost on the slot, none (not nil) when
// the bucket does not exist yet.
func loadSlotRecords(ctx context.Context, js jetstream.JetStream, opts *health.Options) ([]replication.LostEpoch, error) {
	cps, err := sink.OpenCheckpoints(ctx, js)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return []replication.LostEpoch{}, nil
	}
	if err != nil {
		return nil, err
	}
	if opts.Origin, err = cps.LoadOrigin(ctx, opts.Slot); err != nil {
		return nil, err
	}
	lost, err := cps.LoadLostEpochs(ctx, opts.Slot)
	if lost == nil && err == nil {
		lost = []replication.LostEpoch{}
	}
	return lost, err
}

// hostOf names the server and database of a connection string without its credentials.
func hostOf(pgURL string) string {
	cfg, err := pgconn.ParseConfig(pgURL)
	if err != nil {
		return config.MaskURL(pgURL)
	}
	return fmt.Sprintf("%s:%d/%s", cfg.Host, cfg.Port, cfg.Database)
}

func printChecks(w io.Writer, rep doctorReport, asJSON bool) error {
	if asJSON {
		if rep.Checks == nil {
			rep.Checks = []health.Check{}
		}
		return printJSON(w, rep)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, ch := range rep.Checks {
		line := ch.Detail
		if ch.Fix != "" {
			line += " → fix: " + ch.Fix
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", ch.Level, ch.Name, line)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "%d failed, %d warnings, %d checks\n", rep.Failures, rep.Warnings, len(rep.Checks))
	return err
}
