package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/tidemark/tidemark/health"
	"github.com/tidemark/tidemark/internal/sandbox"
	"github.com/tidemark/tidemark/internal/testenv"
	"github.com/tidemark/tidemark/replication"
	"github.com/tidemark/tidemark/sink"
)

// runTidemark runs the binary with the given URLs and arguments and returns stdout, stderr and
// the exit code.
func runTidemark(t *testing.T, pgURL, natsURL string, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, testenv.Binary(t), args...)
	cmd.Env = append(os.Environ(), "TIDEMARK_PG_URL="+pgURL, "TIDEMARK_NATS_URL="+natsURL, "TIDEMARK_CONFIG=")
	return runCommand(t, cmd)
}

// runCommand runs cmd to its end and returns its stdout, stderr and exit code; a command that
// could not run at all fails the test.
func runCommand(t *testing.T, cmd *exec.Cmd) (stdout, stderr string, code int) {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		code = exit.ExitCode()
	default:
		t.Fatalf("run %v: %v\n%s", cmd.Args, err, errOut.String())
	}
	return out.String(), errOut.String(), code
}

func runDoctor(t *testing.T, pgURL, natsURL string, args ...string) (map[string]health.Check, doctorReport, int, string) {
	t.Helper()
	stdout, stderr, code := runTidemark(t, pgURL, natsURL, append([]string{"doctor", "--json", "--timeout", "60s"}, args...)...)
	var rep doctorReport
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("doctor --json stdout is not JSON: %v\nstdout:\n%s\nstderr:\n%s", err, stdout, stderr)
	}
	byName := map[string]health.Check{}
	for _, c := range rep.Checks {
		byName[c.Name] = c
	}
	return byName, rep, code, stderr
}

func wantCheck(t *testing.T, checks map[string]health.Check, name string, level health.Level, detail string) {
	t.Helper()
	c, ok := checks[name]
	if !ok {
		t.Errorf("no %q check in %v", name, checks)
		return
	}
	if c.Level != level || !strings.Contains(c.Detail, detail) {
		t.Errorf("check %s = %s %q, want %s containing %q", name, c.Level, c.Detail, level, detail)
	}
	if level != health.OK && c.Fix == "" {
		t.Errorf("check %s is %s without a fix", name, level)
	}
}

func TestDoctorWalLevelReplica(t *testing.T) {
	t.Parallel()
	pg := testenv.Postgres(t, sandbox.PostgresOptions{Settings: map[string]string{"wal_level": "replica"}})
	checks, rep, code, stderr := runDoctor(t, pg.URL("postgres"), testenv.NATS(t).URL())
	wantCheck(t, checks, "wal_level", health.Fail, "replica")
	if !strings.Contains(checks["wal_level"].Fix, "wal_level = logical") {
		t.Errorf("wal_level fix = %q", checks["wal_level"].Fix)
	}
	if code == 0 || rep.Failures != 1 {
		t.Errorf("exit %d with %d failures, want non-zero with 1 (%s)", code, rep.Failures, stderr)
	}
	// The text form names the check on a FAIL line.
	stdout, _, code := runTidemark(t, pg.URL("postgres"), testenv.NATS(t).URL(), "doctor")
	if code == 0 || !strings.Contains(stdout, "FAIL  wal_level") {
		t.Errorf("doctor (text) exit %d:\n%s", code, stdout)
	}
}

func TestDoctorFreshDatabase(t *testing.T) {
	checks, rep, code, stderr := runDoctor(t, testenv.Database(t), testenv.NATS(t).URL())
	if code != 0 || rep.Failures != 0 {
		t.Fatalf("fresh database: exit %d, %d failures: %+v\n%s", code, rep.Failures, rep.Checks, stderr)
	}
	wantCheck(t, checks, "wal_level", health.OK, "logical")
	wantCheck(t, checks, "schema", health.Warn, "not yet migrated")
	wantCheck(t, checks, "publication", health.OK, "not yet created")
	wantCheck(t, checks, "slot", health.OK, "not yet created")
	wantCheck(t, checks, "stream", health.OK, "not yet created")
	wantCheck(t, checks, "jetstream", health.OK, "enabled")
	wantCheck(t, checks, "replication_privilege", health.OK, "superuser")
}

func TestDoctorMigratedDatabase(t *testing.T) {
	ctx := testenv.Context(t, 2*time.Minute)
	dbURL := testenv.Database(t)
	pool := testenv.Migrated(ctx, t, dbURL)
	for _, sql := range []string{
		"INSERT INTO suppliers (id, name) VALUES (7, 'no partition yet')",
		"CREATE TABLE products_s1 PARTITION OF products FOR VALUES IN (1)",
		"INSERT INTO suppliers (id, name) VALUES (1, 'with partition')",
		"CREATE INDEX products_name_idx ON products (name)",
		"CREATE INDEX products_s1_price_idx ON products_s1 (price)",
		"CREATE PUBLICATION tidemark FOR TABLE products", // publish_via_partition_root off
		"SELECT pg_create_logical_replication_slot('tidemark', 'pgoutput')",
	} {
		if _, err := pool.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	t.Cleanup(func() {
		_, _ = pool.Exec(context.Background(), "SELECT pg_drop_replication_slot('tidemark')")
	})
	// A stream that would lose events when NATS restarts.
	n := testenv.NATS(t)
	js := testenv.JetStream(t, n.URL())
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "PRODUCTS", Subjects: []string{"products.>"}, Storage: jetstream.MemoryStorage}); err != nil {
		t.Fatal(err)
	}

	checks, rep, code, stderr := runDoctor(t, dbURL, n.URL())
	if code != 0 || rep.Failures != 0 {
		t.Fatalf("exit %d, %d failures: %+v\n%s", code, rep.Failures, rep.Checks, stderr)
	}
	wantCheck(t, checks, "schema", health.OK, "migrated")
	wantCheck(t, checks, "indexes", health.OK, "products_pkey")
	wantCheck(t, checks, "index products_name_idx", health.Warn, "never scanned")
	wantCheck(t, checks, "index products_s1_price_idx", health.Warn, "never scanned")
	wantCheck(t, checks, "partitions", health.Warn, "7")
	wantCheck(t, checks, "publication", health.Warn, "publish_via_partition_root off")
	wantCheck(t, checks, "slot", health.OK, "tidemark inactive")
	wantCheck(t, checks, "replication_slots", health.OK, "slot tidemark among them")
	wantCheck(t, checks, "stream", health.Warn, "memory storage")
	if strings.Contains(checks["partitions"].Detail, "1,") {
		t.Errorf("supplier 1 has a partition: %q", checks["partitions"].Detail)
	}
	// The partition made by hand has no truncate trigger; supplier add gives it one.
	wantCheck(t, checks, "truncate_trigger", health.Warn, "products_s1")
	if fix := checks["truncate_trigger"].Fix; !strings.Contains(fix, "tidemark supplier add 1") {
		t.Errorf("truncate_trigger fix = %q", fix)
	}
	testenv.AddSupplier(ctx, t, pool, 1, "")

	// Slot lag over the threshold warns; a slot of another plugin fails.
	if _, err := pool.Exec(ctx, "CREATE TABLE wal_filler AS SELECT g FROM generate_series(1, 10000) g"); err != nil {
		t.Fatal(err)
	}
	checks, _, _, _ = runDoctor(t, dbURL, n.URL(), "--lag-warn", "1024")
	wantCheck(t, checks, "slot", health.Warn, "over 1.0 KiB")
	wantCheck(t, checks, "truncate_trigger", health.OK, "every supplier partition")
	if _, err := pool.Exec(ctx, "SELECT pg_create_logical_replication_slot('other', 'test_decoding')"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = pool.Exec(context.Background(), "SELECT pg_drop_replication_slot('other')") })
	checks, _, code, _ = runDoctor(t, dbURL, n.URL(), "--slot", "other")
	wantCheck(t, checks, "slot", health.Fail, "test_decoding")
	if code == 0 {
		t.Error("a slot with the wrong plugin exits 0")
	}
}

func TestDoctorRoleWithoutReplication(t *testing.T) {
	ctx := testenv.Context(t, time.Minute)
	dbURL := testenv.Database(t)
	pool := testenv.Pool(t, dbURL)
	role, roleURL := testenv.Role(ctx, t, pool, "doctor_plain")
	checks, _, code, _ := runDoctor(t, roleURL, testenv.NATS(t).URL())
	wantCheck(t, checks, "replication_privilege", health.Fail, "neither REPLICATION nor superuser")
	if !strings.Contains(checks["replication_privilege"].Fix, fmt.Sprintf(`ALTER ROLE %q REPLICATION`, role)) {
		t.Errorf("fix = %q", checks["replication_privilege"].Fix)
	}
	if code == 0 {
		t.Error("exit 0 for a role that cannot replicate")
	}
}

func TestDoctorNATSProblems(t *testing.T) {
	dbURL := testenv.Database(t)
	// Nothing listens: NATS unreachable fails.
	dead := testenv.NATS(t)
	deadURL := dead.URL()
	dead.Shutdown()
	checks, _, code, _ := runDoctor(t, dbURL, deadURL)
	wantCheck(t, checks, "nats", health.Fail, "connect to nats")
	if code == 0 {
		t.Error("exit 0 with NATS unreachable")
	}
	// NATS without JetStream fails on the jetstream check.
	srv := testenv.NATSServer(t, server.Options{})
	checks, _, code, _ = runDoctor(t, dbURL, srv.ClientURL())
	wantCheck(t, checks, "nats", health.OK, "nats-server")
	wantCheck(t, checks, "jetstream", health.Fail, "not enabled")
	if code == 0 {
		t.Error("exit 0 with JetStream off")
	}
	// PostgreSQL unreachable fails too, and the NATS checks still run.
	pg := testenv.Postgres(t)
	pgURL := pg.URL("postgres")
	if err := pg.Stop(); err != nil {
		t.Fatal(err)
	}
	checks, _, code, _ = runDoctor(t, pgURL, srv.ClientURL())
	wantCheck(t, checks, "postgres", health.Fail, "connect")
	if _, ok := checks["jetstream"]; !ok || code == 0 {
		t.Errorf("postgres down: exit %d, checks %v", code, checks)
	}
}

// TestDoctorDroppedSlot: a slot dropped after replicate streamed from it (and saved its
// checkpoint) is a failed check naming it lost and the resync, not "not yet created", and
// status says it is lost (dropped).
func TestDoctorDroppedSlot(t *testing.T) {
	t.Parallel()
	e := newReplEnv(t)
	ctx := testenv.Context(t, 2*time.Minute)
	repl := e.replicate(t)
	repl.streaming(t)
	e.exec(t, `INSERT INTO products (supplier_id, sku, name) VALUES (1, 'KS-1', 'Kaska wool throw')`)
	want := e.currentLSN(t)
	cps, err := sink.EnsureCheckpoints(ctx, e.js(t), 1)
	if err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, "the checkpoint past the insert", time.Minute, func() bool {
		lsn, err := cps.Load(ctx, "tidemark")
		return err == nil && lsn >= want
	})
	checks, rep, code, stderr := runDoctor(t, e.url, e.nats.URL())
	if code != 0 || rep.Failures != 0 {
		t.Fatalf("exit %d, %d failures while replicate streams: %+v\n%s", code, rep.Failures, rep.Checks, stderr)
	}
	wantCheck(t, checks, "slot", health.OK, "tidemark active")
	wantCheck(t, checks, "checkpoint", health.OK, "saved at")

	if err := repl.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := repl.wait(); err != nil {
		t.Fatalf("replicate after SIGTERM: %v", err)
	}
	if _, err := e.pool.Exec(ctx, "SELECT pg_drop_replication_slot('tidemark')"); err != nil {
		t.Fatal(err)
	}
	if _, _, code, _ = runDoctor(t, e.url, e.nats.URL()); code != 1 {
		t.Errorf("doctor exits %d with the slot dropped, want 1", code)
	}
	e.wantLostSaid(t, "dropped")
}

// TestDoctorLostEpochs: doctor warns of the snapshot epochs replicate saved as lost whose
// supplier was not snapshotted since (a snapshot that opened its epoch after the loss and
// finished), naming the command for each; once every one is, the check is OK.
func TestDoctorLostEpochs(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t, 2*time.Minute)
	dbURL := testenv.Database(t)
	pool := testenv.Migrated(ctx, t, dbURL)
	n := testenv.NATS(t)
	// A slot name of its own: slots are the cluster's, and other tests create "tidemark".
	const slot = "doctor_lost_epochs"
	checks, _, _, _ := runDoctor(t, dbURL, n.URL(), "--slot", slot)
	wantCheck(t, checks, "lost_epochs", health.OK, "none saved")

	cps, err := sink.EnsureCheckpoints(ctx, testenv.JetStream(t, n.URL()), 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := cps.SaveLostEpochs(ctx, slot, []replication.LostEpoch{
		{ID: "s5-a.1", Supplier: 5, Lost: 0x3000000},
		{ID: "s6-b.2", Supplier: 6, Lost: 0x3000000, Closed: 0x3000100},
		{ID: "s5-c.3", Supplier: 5, Lost: 0x3000200},
	}); err != nil {
		t.Fatal(err)
	}
	snapshotted := func(id string, supplier int, openLSN string) {
		t.Helper()
		if _, err := pool.Exec(ctx, `INSERT INTO tidemark_snapshots (id, supplier_id, until_id, finished_at, epoch_id, open_lsn)
			VALUES ($1, $2, 0, now(), $1 || '.1', $3::pg_lsn)`, id, supplier, openLSN); err != nil {
			t.Fatal(err)
		}
	}
	snapshotted("s6-new", 6, "0/3000001")
	snapshotted("s5-between", 5, "0/3000100") // after the first loss of 5, before its second
	checks, rep, code, stderr := runDoctor(t, dbURL, n.URL(), "--slot", slot)
	if code != 0 {
		t.Errorf("doctor exits %d for lost epochs, want 0 (a warning): %+v\n%s", code, rep.Checks, stderr)
	}
	wantCheck(t, checks, "lost_epochs", health.Warn, "supplier 5 (epoch s5-c.3, chunk lost at 0/3000200)")
	if c := checks["lost_epochs"]; strings.Contains(c.Detail, "supplier 6") || strings.Contains(c.Detail, "s5-a.1") ||
		c.Fix != "tidemark snapshot --supplier 5 --new-epoch" {
		t.Errorf("lost_epochs: %+v, want only s5-c.3 and its command", c)
	}

	snapshotted("s5-new", 5, "0/3000300")
	checks, _, _, _ = runDoctor(t, dbURL, n.URL(), "--slot", slot)
	wantCheck(t, checks, "lost_epochs", health.OK, "3 saved, each supplier snapshotted again since")
}

// silentNATS is a NATS server that accepts clients and answers their pings, and nothing else:
// a JetStream whose cluster lost its quorum looks so to a client (requests time out).
func silentNATS(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	port := ln.Addr().(*net.TCPAddr).Port
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer func() { _ = conn.Close() }()
				fmt.Fprintf(conn, "INFO {\"server_id\":\"silent\",\"server_name\":\"silent\",\"version\":\"2.10.22\",\"proto\":1,\"host\":\"127.0.0.1\",\"port\":%d,\"headers\":true,\"max_payload\":1048576}\r\n", port)
				r := bufio.NewReader(conn)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					f := strings.Fields(line)
					if len(f) == 0 {
						continue
					}
					switch strings.ToUpper(f[0]) {
					case "PING":
						_, _ = io.WriteString(conn, "PONG\r\n")
					case "PUB", "HPUB":
						// The payload (its size is the last field) and its CRLF go unanswered.
						n, _ := strconv.Atoi(f[len(f)-1])
						if _, err := io.CopyN(io.Discard, r, int64(n)+2); err != nil {
							return
						}
					}
				}
			}()
		}
	}()
	return fmt.Sprintf("nats://127.0.0.1:%d", port)
}

// TestDoctorSilentJetStreamLeavesPostgresChecks: a NATS whose JetStream never answers fails
// the NATS checks, and the PostgreSQL ones still run and pass (they run after NATS, which
// reads the checkpoint, and must not find the time spent).
func TestDoctorSilentJetStreamLeavesPostgresChecks(t *testing.T) {
	dbURL := testenv.Database(t)
	checks, _, code, stderr := runDoctor(t, dbURL, silentNATS(t), "--timeout", "6s")
	wantCheck(t, checks, "postgres", health.OK, "PostgreSQL")
	wantCheck(t, checks, "wal_level", health.OK, "logical")
	if c, ok := checks["jetstream"]; !ok || c.Level != health.Fail {
		t.Errorf("jetstream check %+v, want a failure", c)
	}
	if code != 1 {
		t.Errorf("exit %d, want 1\n%s", code, stderr)
	}
}

// TestDoctorLogicalMessages: doctor warns while every role may write logical messages (which
// replicate would publish as snapshot rows and truncates), is content once only granted
// roles may, and fails for a role that may not (its heartbeats and snapshots fail) and for an
// owner of the truncate trigger's function that may not (every partition truncate fails).
func TestDoctorLogicalMessages(t *testing.T) {
	ctx := testenv.Context(t, 2*time.Minute)
	dbURL := testenv.Database(t)
	pool := testenv.Migrated(ctx, t, dbURL)
	natsURL := testenv.NATS(t).URL()
	checks, _, _, _ := runDoctor(t, dbURL, natsURL)
	wantCheck(t, checks, "logical_messages", health.Warn, "every role may write logical messages")
	sigs, text := testenv.EmitMessageFunctions(ctx, t, pool)
	if fix := checks["logical_messages"].Fix; !strings.Contains(fix, "REVOKE EXECUTE ON FUNCTION "+sigs+" FROM PUBLIC") {
		t.Errorf("fix = %q", fix)
	}

	// Function privileges belong to the database: this revoke is this test's alone.
	if _, err := pool.Exec(ctx, "REVOKE EXECUTE ON FUNCTION "+sigs+" FROM PUBLIC"); err != nil {
		t.Fatal(err)
	}
	checks, _, _, _ = runDoctor(t, dbURL, natsURL)
	wantCheck(t, checks, "logical_messages", health.OK, "only superusers and no other role may write logical messages")

	role, roleURL := testenv.Role(ctx, t, pool, "doctor_msgs")
	checks, _, code, _ := runDoctor(t, roleURL, natsURL)
	wantCheck(t, checks, "logical_messages", health.Fail, "heartbeats and tidemark snapshot fail (those that may: superusers and no other role)")
	if fix, want := checks["logical_messages"].Fix, fmt.Sprintf("GRANT EXECUTE ON FUNCTION %s TO %q;", text, role); fix != want {
		t.Errorf("fix = %q, want %q", fix, want)
	}
	if code == 0 {
		t.Error("exit 0 for a role that may not write heartbeats")
	}
	if _, err := pool.Exec(ctx, "GRANT EXECUTE ON FUNCTION "+text+" TO "+role); err != nil {
		t.Fatal(err)
	}

	// Another role streaming the slot (doctor run by an administrator, say) must too: its
	// heartbeats fail.
	streamer, streamerURL := testenv.Role(ctx, t, pool, "doctor_streamer")
	for _, sql := range []string{"ALTER ROLE " + streamer + " REPLICATION", "CREATE PUBLICATION tidemark FOR TABLE products",
		"SELECT pg_create_logical_replication_slot('tidemark', 'pgoutput')"} {
		if _, err := pool.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		_, _ = pool.Exec(context.Background(), "DROP PUBLICATION tidemark; SELECT pg_drop_replication_slot('tidemark')")
	})
	stream := streamSlot(ctx, t, pool, streamerURL, "tidemark")
	checks, _, code, _ = runDoctor(t, roleURL, natsURL)
	wantCheck(t, checks, "logical_messages", health.Fail, fmt.Sprintf("role %s, which streams slot tidemark now, may not execute %s", streamer, text))
	if fix, want := checks["logical_messages"].Fix, fmt.Sprintf("GRANT EXECUTE ON FUNCTION %s TO %q;", text, streamer); fix != want {
		t.Errorf("fix = %q, want %q", fix, want)
	}
	if code == 0 {
		t.Error("exit 0 while the streaming role may not write heartbeats")
	}
	if _, err := pool.Exec(ctx, "GRANT EXECUTE ON FUNCTION "+text+" TO "+streamer); err != nil {
		t.Fatal(err)
	}
	checks, _, _, _ = runDoctor(t, roleURL, natsURL)
	wantCheck(t, checks, "logical_messages", health.OK, fmt.Sprintf("only superusers and %s may write logical messages",
		strings.Join(slices.Sorted(slices.Values([]string{role, streamer})), ", ")))
	stream()

	owner, _ := testenv.Role(ctx, t, pool, "doctor_owner")
	if _, err := pool.Exec(ctx, fmt.Sprintf("ALTER FUNCTION tidemark_truncate_partition() OWNER TO %s", owner)); err != nil {
		t.Fatal(err)
	}
	checks, _, _, _ = runDoctor(t, roleURL, natsURL)
	wantCheck(t, checks, "logical_messages", health.Fail, fmt.Sprintf("role %s, owner of the truncate trigger's function", owner))
	if fix := checks["logical_messages"].Fix; !strings.Contains(fix, fmt.Sprintf("TO %q;", owner)) {
		t.Errorf("fix = %q", fix)
	}
	if _, err := pool.Exec(ctx, "GRANT EXECUTE ON FUNCTION "+text+" TO "+owner); err != nil {
		t.Fatal(err)
	}
	checks, _, _, _ = runDoctor(t, roleURL, natsURL)
	wantCheck(t, checks, "logical_messages", health.OK, fmt.Sprintf("only superusers and %s may write logical messages",
		strings.Join(slices.Sorted(slices.Values([]string{role, owner, streamer})), ", ")))

	// A role granted only the bytea overload forges as well, and is named once with the others.
	var bytea string
	if err := pool.QueryRow(ctx, `SELECT oid::regprocedure::text FROM pg_proc
		WHERE proname = 'pg_logical_emit_message' AND proargtypes[2] = 'bytea'::regtype`).Scan(&bytea); err != nil {
		t.Fatal(err)
	}
	forger, _ := testenv.Role(ctx, t, pool, "doctor_bytea")
	if _, err := pool.Exec(ctx, fmt.Sprintf("GRANT EXECUTE ON FUNCTION %s TO %s, %s", bytea, forger, role)); err != nil {
		t.Fatal(err)
	}
	checks, _, _, _ = runDoctor(t, roleURL, natsURL)
	wantCheck(t, checks, "logical_messages", health.OK, fmt.Sprintf("only superusers and %s may write logical messages",
		strings.Join(slices.Sorted(slices.Values([]string{role, owner, streamer, forger})), ", ")))
}

// streamSlot streams slot as the role of url, on a replication connection of its own, until
// the returned stop is called: the slot is active, with that role's backend. stop returns
// once the slot is released.
func streamSlot(ctx context.Context, t *testing.T, pool *pgxpool.Pool, url, slot string) (stop func()) {
	t.Helper()
	cfg, err := pgconn.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	cfg.RuntimeParams["replication"] = "database"
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	if err := pglogrepl.StartReplication(ctx, conn, slot, 0, pglogrepl.StartReplicationOptions{
		PluginArgs: []string{"proto_version '1'", "publication_names 'tidemark'"}}); err != nil {
		t.Fatal(err)
	}
	active := func(want bool) func() bool {
		return func() bool {
			var active bool
			err := pool.QueryRow(ctx, "SELECT active FROM pg_replication_slots WHERE slot_name = $1", slot).Scan(&active)
			return err == nil && active == want
		}
	}
	testenv.WaitFor(t, "the slot to be active", 30*time.Second, active(true))
	return func() {
		_ = conn.Close(context.Background())
		testenv.WaitFor(t, "the slot to be released", 30*time.Second, active(false))
	}
}
