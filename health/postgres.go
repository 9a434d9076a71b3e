package health

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/tidemark/tidemark/catalog"
	"github.com/tidemark/tidemark/event"
	"github.com/tidemark/tidemark/replication"
	"github.com/tidemark/tidemark/sink"
)

// Options name what the checks look for.
type Options struct {
	Slot        string // replication slot; default replication.DefaultSlot
	Publication string // default replication.DefaultPublication
	Stream      string // default event.Stream
	// Bucket is the checkpoint KV bucket; default sink.CheckpointBucket (key = slot name).
	Bucket string
	// LagWarn is the slot lag, in bytes, above which a check warns; default 1 GiB.
	LagWarn int64
	// Checkpoint is the slot's checkpoint saved in Bucket (SavedCheckpoint), 0 when none is
	// saved or it could not be read. When set, a missing slot is lost (dropped), not merely
	// not yet created.
	Checkpoint pglogrepl.LSN
	// Origin is the origin (replication.Origin) saved with Checkpoint, "" when unknown: a slot
	// on another server than it is lost (new_primary).
	Origin string
}

func (o Options) withDefaults() Options {
	o.Slot = cmp.Or(o.Slot, replication.DefaultSlot)
	o.Publication = cmp.Or(o.Publication, replication.DefaultPublication)
	o.Stream = cmp.Or(o.Stream, event.Stream)
	o.Bucket = cmp.Or(o.Bucket, sink.CheckpointBucket)
	if o.LagWarn <= 0 {
		o.LagWarn = 1 << 30
	}
	return o
}

// PostgresChecks checks the database for logical replication and for the pipeline's objects. A
// query that fails becomes a failed check rather than an error, so one bad check does not hide
// the others.
func PostgresChecks(ctx context.Context, pool *pgxpool.Pool, opts Options) []Check {
	opts = opts.withDefaults()
	var checks []Check
	add := func(c ...Check) { checks = append(checks, c...) }
	add(walLevel(ctx, pool))
	add(slotsAndSenders(ctx, pool, opts)...)
	add(replicationPrivilege(ctx, pool))
	add(logicalMessages(ctx, pool, opts.Slot))
	add(walKeepSize(ctx, pool))
	migrated, c := schema(ctx, pool)
	add(c)
	add(publication(ctx, pool, opts))
	add(slot(ctx, pool, opts))
	if migrated {
		add(indexes(ctx, pool)...)
		add(partitions(ctx, pool))
		add(truncateTriggers(ctx, pool))
		add(vectorChecks(ctx, pool)...)
	}
	return checks
}

func queryFailed(name string, err error) Check {
	return fail(name, "check the role can read the pg_catalog views", "query failed: %v", err)
}

func walLevel(ctx context.Context, db *pgxpool.Pool) Check {
	level, err := replication.CheckWALLevel(ctx, db)
	switch {
	case errors.Is(err, replication.ErrWALLevel):
		return fail("wal_level", "ALTER SYSTEM SET wal_level = logical; then restart PostgreSQL",
			"wal_level is %s: logical replication needs logical", level)
	case err != nil:
		return queryFailed("wal_level", err)
	}
	return ok("wal_level", "%s", level)
}

func setting(ctx context.Context, db *pgxpool.Pool, name string) (int64, error) {
	var s string
	if err := db.QueryRow(ctx, "SELECT current_setting($1)", name).Scan(&s); err != nil {
		return 0, err
	}
	return strconv.ParseInt(s, 10, 64)
}

func slotsAndSenders(ctx context.Context, db *pgxpool.Pool, opts Options) []Check {
	maxSlots, err := setting(ctx, db, "max_replication_slots")
	if err != nil {
		return []Check{queryFailed("replication_slots", err)}
	}
	var used, ours int64
	var oursActive bool
	if err := db.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE slot_name = $1),
		coalesce(bool_or(active) FILTER (WHERE slot_name = $1), false) FROM pg_replication_slots`, opts.Slot).
		Scan(&used, &ours, &oursActive); err != nil {
		return []Check{queryFailed("replication_slots", err)}
	}
	var out []Check
	free := maxSlots - used
	switch {
	case ours > 0:
		out = append(out, ok("replication_slots", "%d of %d used, slot %s among them", used, maxSlots, opts.Slot))
	case free <= 0:
		out = append(out, fail("replication_slots", "raise max_replication_slots (restart needed) or drop an unused slot with pg_drop_replication_slot()",
			"all %d replication slots are used and %s is not one of them", maxSlots, opts.Slot))
	default:
		out = append(out, ok("replication_slots", "%d of %d used, %d free", used, maxSlots, free))
	}
	maxSenders, err := setting(ctx, db, "max_wal_senders")
	if err != nil {
		return append(out, queryFailed("wal_senders", err))
	}
	var senders int64
	if err := db.QueryRow(ctx, "SELECT count(*) FROM pg_stat_replication").Scan(&senders); err != nil {
		return append(out, queryFailed("wal_senders", err))
	}
	switch freeSenders := maxSenders - senders; {
	case oursActive:
		out = append(out, ok("wal_senders", "%d of %d in use, the replicator's among them", senders, maxSenders))
	case freeSenders <= 0:
		out = append(out, fail("wal_senders", "raise max_wal_senders (restart needed)",
			"all %d WAL senders are in use: the replicator cannot connect", maxSenders))
	case freeSenders == 1:
		out = append(out, warn("wal_senders", "raise max_wal_senders (restart needed) to leave room for a standby replicator or a base backup",
			"%d of %d in use: one left", senders, maxSenders))
	default:
		out = append(out, ok("wal_senders", "%d of %d in use", senders, maxSenders))
	}
	return out
}

func replicationPrivilege(ctx context.Context, db *pgxpool.Pool) Check {
	var role string
	var repl, super bool
	if err := db.QueryRow(ctx, "SELECT rolname, rolreplication, rolsuper FROM pg_roles WHERE rolname = current_user").
		Scan(&role, &repl, &super); err != nil {
		return queryFailed("replication_privilege", err)
	}
	switch {
	case super:
		return ok("replication_privilege", "role %s is a superuser", role)
	case repl:
		return ok("replication_privilege", "role %s has REPLICATION", role)
	}
	return fail("replication_privilege", fmt.Sprintf("ALTER ROLE %s REPLICATION;", pgx.Identifier{role}.Sanitize()),
		"role %s has neither REPLICATION nor superuser: it cannot create or read a replication slot", role)
}

func walKeepSize(ctx context.Context, db *pgxpool.Pool) Check {
	var v string
	err := db.QueryRow(ctx, "SELECT current_setting('max_slot_wal_keep_size', true)").Scan(&v)
	if err != nil {
		return queryFailed("max_slot_wal_keep_size", err)
	}
	switch v {
	case "":
		return warn("max_slot_wal_keep_size", "upgrade to PostgreSQL 13 or later and set max_slot_wal_keep_size",
			"not supported by this server: a stalled slot can fill the disk")
	case "-1":
		return warn("max_slot_wal_keep_size", "ALTER SYSTEM SET max_slot_wal_keep_size = '50GB' (size it to your disk); SELECT pg_reload_conf();",
			"unlimited: a stalled or abandoned slot keeps WAL until the disk is full")
	}
	return ok("max_slot_wal_keep_size", "%s", v)
}

func schema(ctx context.Context, db *pgxpool.Pool) (bool, Check) {
	pending, err := catalog.Pending(ctx, db)
	if err != nil {
		return false, queryFailed("schema", err)
	}
	if len(pending) > 0 {
		var hasProducts bool
		_ = db.QueryRow(ctx, "SELECT to_regclass('products') IS NOT NULL").Scan(&hasProducts)
		return hasProducts, warn("schema", "run tidemark migrate", "not yet migrated: %s pending", strings.Join(pending, ", "))
	}
	return true, ok("schema", "migrated")
}

func publication(ctx context.Context, db *pgxpool.Pool, opts Options) Check {
	var viaRoot, hasProducts bool
	err := db.QueryRow(ctx, `SELECT p.pubviaroot,
		EXISTS (SELECT 1 FROM pg_publication_tables t WHERE t.pubname = p.pubname AND t.tablename = 'products')
		FROM pg_publication p WHERE p.pubname = $1`, opts.Publication).Scan(&viaRoot, &hasProducts)
	if errors.Is(err, pgx.ErrNoRows) {
		return ok("publication", "%s not yet created (tidemark replicate creates it)", opts.Publication)
	}
	if err != nil {
		return queryFailed("publication", err)
	}
	name := pgx.Identifier{opts.Publication}.Sanitize()
	if !viaRoot {
		return warn("publication", fmt.Sprintf("ALTER PUBLICATION %s SET (publish_via_partition_root = true);", name),
			"%s has publish_via_partition_root off: changes arrive named after partitions (products_s<ID>), not products", opts.Publication)
	}
	if !hasProducts {
		return warn("publication", fmt.Sprintf("ALTER PUBLICATION %s ADD TABLE products;", name),
			"%s does not publish products", opts.Publication)
	}
	return ok("publication", "%s publishes products via the partition root", opts.Publication)
}

// Slot is a logical replication slot as pg_replication_slots shows it.
type Slot struct {
	Name         string `json:"name"`
	Plugin       string `json:"plugin"`
	Database     string `json:"database"`
	Active       bool   `json:"active"`
	ActivePID    *int32 `json:"active_pid,omitempty"`
	ConfirmedLSN string `json:"confirmed_lsn"`
	RestartLSN   string `json:"restart_lsn"`
	// LagBytes is the WAL between the server's current position and the confirmed LSN: what
	// the slot retains and the replicator has yet to confirm.
	LagBytes int64 `json:"lag_bytes"`
	// WALStatus is reserved, extended, unreserved or lost (PostgreSQL 13+).
	WALStatus string `json:"wal_status"`
}

// slotOf is the status view of a slot read by replication.ReadSlot.
func slotOf(r replication.Slot) *Slot {
	s := &Slot{Name: r.Name, Plugin: r.Plugin, Database: r.Database, Active: r.Active,
		LagBytes: r.LagBytes(), WALStatus: r.WALStatus}
	if r.ActivePID != 0 {
		pid := r.ActivePID
		s.ActivePID = &pid
	}
	if r.ConfirmedLSN != 0 {
		s.ConfirmedLSN = r.ConfirmedLSN.String()
	}
	if r.RestartLSN != 0 {
		s.RestartLSN = r.RestartLSN.String()
	}
	return s
}

func slot(ctx context.Context, db *pgxpool.Pool, opts Options) Check {
	resync := "tidemark replicate --on-slot-lost resync (a new slot and a snapshot of every supplier; see the README, \"When the slot is lost\")"
	r, err := replication.ReadSlot(ctx, db, opts.Slot)
	missing := errors.Is(err, replication.ErrNoSlot)
	if err != nil && !missing {
		return queryFailed("slot", err)
	}
	check, originErr := slotCheck(ctx, db, opts)
	lost := replication.Lost(opts.Slot, r, missing, check)
	lostCheck := func() Check {
		return fail("slot", resync, "%s is lost: %s (%s); the changes committed after %s are gone from the WAL",
			opts.Slot, lost.Reason, lost.Detail, lost.MissingFrom)
	}
	switch {
	case missing && lost != nil:
		return lostCheck()
	case missing:
		return ok("slot", "%s not yet created (tidemark replicate creates it)", opts.Slot)
	}
	s := slotOf(r)
	var dbName string
	if err := db.QueryRow(ctx, "SELECT current_database()").Scan(&dbName); err != nil {
		return queryFailed("slot", err)
	}
	drop := fmt.Sprintf("SELECT pg_drop_replication_slot('%s'); then restart tidemark replicate (it re-creates the slot; take a snapshot for what was missed)", opts.Slot)
	switch {
	case s.Plugin != "pgoutput":
		return fail("slot", drop, "%s uses the %s plugin, not pgoutput", s.Name, s.Plugin)
	case s.Database != dbName:
		return fail("slot", "point --pg-url at database "+s.Database+", or use another --slot name", "%s belongs to database %s, not %s", s.Name, s.Database, dbName)
	case lost != nil:
		return lostCheck()
	}
	state := "inactive"
	if s.Active {
		state = "active"
	}
	if s.LagBytes > opts.LagWarn {
		return warn("slot", "start (or unblock) tidemark replicate; if the slot is abandoned, drop it before it fills the disk",
			"%s %s, lag %s (over %s), wal_status %s", s.Name, state, FormatBytes(s.LagBytes), FormatBytes(opts.LagWarn), s.WALStatus)
	}
	if s.WALStatus == "unreserved" {
		return warn("slot", "start (or unblock) tidemark replicate now: the slot is about to lose WAL it needs",
			"%s %s, lag %s, wal_status unreserved", s.Name, state, FormatBytes(s.LagBytes))
	}
	if originErr != nil {
		var role string
		_ = db.QueryRow(ctx, "SELECT current_user").Scan(&role)
		return warn("slot", fmt.Sprintf("as a superuser: GRANT EXECUTE ON FUNCTION pg_control_system(), pg_walfile_name(pg_lsn), pg_current_wal_insert_lsn() TO %s;",
			pgx.Identifier{role}.Sanitize()),
			"%s: cannot tell whether it is on the server the checkpoint was taken on (%s), so whether it is lost: %v",
			opts.Slot, opts.Origin, originErr)
	}
	return ok("slot", "%s %s, confirmed %s, lag %s", s.Name, state, s.ConfirmedLSN, FormatBytes(s.LagBytes))
}

// slotCheck is what the saved checkpoint says of the slot. The server's origin is read only
// when there is a saved one to compare it with; on a standby, or when it cannot be read (the
// error), the origins are not compared.
func slotCheck(ctx context.Context, db *pgxpool.Pool, opts Options) (replication.SlotCheck, error) {
	c := replication.SlotCheck{Saved: opts.Checkpoint, SavedOrigin: opts.Origin}
	var err error
	if opts.Checkpoint != 0 && opts.Origin != "" {
		c.Origin, err = replication.ServerOrigin(ctx, db)
	}
	return c, err
}

// leanShape names the indexes the schema defines on products; anything else is extra.
func leanShape(primary, unique bool, cols []string, pred string, hasExprs bool) string {
	switch {
	case hasExprs:
		return ""
	case primary && slices.Equal(cols, []string{"supplier_id", "id"}) && pred == "":
		return "primary key"
	case unique && slices.Equal(cols, []string{"supplier_id", "sku"}) && pred == "":
		return "unique (supplier_id, sku)"
	case !unique && slices.Equal(cols, []string{"updated_at"}) && pred == "":
		return "updated_at"
	case !unique && strings.Contains(pred, "status") && strings.Contains(pred, "'pending'"):
		return "pending"
	}
	return ""
}

func indexes(ctx context.Context, db *pgxpool.Pool) []Check {
	// Top-level indexes of the products tree: those on products itself and those created on a
	// single partition (which no parent index owns). Scans are summed over each index's
	// partitions, since a partitioned index keeps no statistics of its own.
	rows, err := db.Query(ctx, `
		SELECT c.relname, t.relname, pg_get_indexdef(i.indexrelid), i.indisprimary, i.indisunique,
		       array(SELECT coalesce(a.attname, '') FROM unnest(i.indkey::int2[]) WITH ORDINALITY k(attnum, ord)
		             LEFT JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum ORDER BY k.ord),
		       coalesce(pg_get_expr(i.indpred, i.indrelid), ''), i.indexprs IS NOT NULL,
		       coalesce((SELECT sum(s.idx_scan) FROM pg_partition_tree(i.indexrelid) pt
		                 JOIN pg_stat_user_indexes s ON s.indexrelid = pt.relid), 0)::bigint
		FROM pg_partition_tree('products') tree
		JOIN pg_index i ON i.indrelid = tree.relid
		JOIN pg_class c ON c.oid = i.indexrelid
		JOIN pg_class t ON t.oid = i.indrelid
		WHERE NOT EXISTS (SELECT 1 FROM pg_inherits h WHERE h.inhrelid = i.indexrelid)
		ORDER BY tree.level, c.relname`)
	if err != nil {
		return []Check{queryFailed("indexes", err)}
	}
	type index struct {
		name, table, def, pred string
		primary, unique, exprs bool
		cols                   []string
		scans                  int64
	}
	list, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (index, error) {
		var ix index
		err := r.Scan(&ix.name, &ix.table, &ix.def, &ix.primary, &ix.unique, &ix.cols, &ix.pred, &ix.exprs, &ix.scans)
		return ix, err
	})
	if err != nil {
		return []Check{queryFailed("indexes", err)}
	}
	seen := map[string]bool{}
	var lean []string
	var out []Check
	for _, ix := range list {
		shape := ""
		if ix.table == "products" {
			shape = leanShape(ix.primary, ix.unique, ix.cols, ix.pred, ix.exprs)
		}
		if shape != "" && !seen[shape] {
			seen[shape] = true
			lean = append(lean, ix.name)
			continue
		}
		fix := fmt.Sprintf("DROP INDEX %s; unless a query needs it", pgx.Identifier{ix.name}.Sanitize())
		if ix.scans == 0 {
			out = append(out, warn("index "+ix.name, fix,
				"beyond the lean set and never scanned: every index is paid on every insert (%s)", ix.def))
		} else {
			out = append(out, ok("index "+ix.name, "beyond the lean set, scanned %d times (%s)", ix.scans, ix.def))
		}
	}
	if missing := 4 - len(seen); missing > 0 {
		out = append([]Check{warn("indexes", "run tidemark migrate, or re-create the schema's indexes (sql/0001_products.sql)",
			"%d of the schema's 4 indexes on products are missing (present: %s)", missing, strings.Join(lean, ", "))}, out...)
	} else {
		out = append([]Check{ok("indexes", "the lean set: %s", strings.Join(lean, ", "))}, out...)
	}
	return out
}

func partitions(ctx context.Context, db *pgxpool.Pool) Check {
	missing, err := column[int32](ctx, db, `
		SELECT s.id FROM suppliers s
		WHERE NOT EXISTS (SELECT 1 FROM pg_inherits h
			WHERE h.inhparent = 'products'::regclass AND h.inhrelid = to_regclass(quote_ident('products_s' || s.id)))
		ORDER BY s.id`)
	if err != nil {
		return queryFailed("partitions", err)
	}
	if len(missing) == 0 {
		var n int
		if err := db.QueryRow(ctx, "SELECT count(*) FROM suppliers").Scan(&n); err != nil {
			return queryFailed("partitions", err)
		}
		return ok("partitions", "every supplier (%d) has its partition", n)
	}
	ids := make([]string, len(missing))
	for i, id := range missing {
		ids[i] = strconv.Itoa(int(id))
	}
	return warn("partitions", "tidemark supplier add "+ids[0]+" (for each one; the loader also creates them on demand)",
		"suppliers without a partition (their rows cannot be inserted): %s", strings.Join(ids, ", "))
}

// truncateTriggers finds supplier partitions without catalog.TruncateTrigger: a TRUNCATE of one
// of them alone is not published (PostgreSQL publishes it only through the root), so its
// products would stay alive downstream. Partitions made by `supplier add` or the loader have it.
func truncateTriggers(ctx context.Context, db *pgxpool.Pool) Check {
	missing, err := column[string](ctx, db, `
		SELECT c.relname FROM pg_inherits h JOIN pg_class c ON c.oid = h.inhrelid
		WHERE h.inhparent = 'products'::regclass
		  AND NOT EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = h.inhrelid AND t.tgname = $1 AND t.tgenabled = 'A')
		ORDER BY c.relname`, catalog.TruncateTrigger)
	if err != nil {
		return queryFailed("truncate_trigger", err)
	}
	if len(missing) == 0 {
		return ok("truncate_trigger", "every supplier partition publishes its truncates")
	}
	var migrated bool
	if err := db.QueryRow(ctx, "SELECT to_regproc('tidemark_truncate_partition') IS NOT NULL").Scan(&migrated); err != nil {
		return queryFailed("truncate_trigger", err)
	}
	fix := "tidemark migrate (it adds the trigger to every partition)"
	if migrated {
		fix = "tidemark supplier add ID (for each one: it adds the trigger)"
		if id, ok := catalog.PartitionSupplier(missing[0]); ok {
			fix = fmt.Sprintf("tidemark supplier add %d (for each one: it adds the trigger)", id)
		}
	}
	return warn("truncate_trigger", fix,
		"partitions without the truncate trigger, or with it disabled (a TRUNCATE of one alone is not published): %s", strings.Join(missing, ", "))
}

// logicalMessages checks who may write logical messages. Replicate publishes tidemark.*
// messages as snapshot rows, partition truncates and epochs, and PostgreSQL does not say who
// wrote one: while PUBLIC may execute pg_logical_emit_message (the default), any role that can
// connect could have forged rows or truncates published. The role doctor runs as (the
// pipeline's: replicate's heartbeats, tidemark snapshot), the owner of the truncate trigger's
// function and the role streaming the slot, when that is another, must keep it.
func logicalMessages(ctx context.Context, db *pgxpool.Pool, slot string) Check {
	const name = "logical_messages"
	rows, err := db.Query(ctx, `
		WITH owner AS (SELECT f.proowner AS id FROM pg_proc f WHERE f.oid = to_regproc('tidemark_truncate_partition')),
		     streamer AS (SELECT a.usesysid AS id FROM pg_replication_slots s JOIN pg_stat_activity a ON a.pid = s.active_pid
		                  WHERE s.slot_name = $1)
		SELECT p.oid::regprocedure::text,
		       has_function_privilege(p.oid, 'EXECUTE'),
		       p.proacl IS NULL OR EXISTS (SELECT 1 FROM aclexplode(p.proacl) a
		                                   WHERE a.grantee = 0 AND a.privilege_type = 'EXECUTE'),
		       coalesce((SELECT has_function_privilege(id, p.oid, 'EXECUTE') FROM owner), true),
		       coalesce((SELECT pg_get_userbyid(id) FROM owner), ''),
		       coalesce((SELECT has_function_privilege(id, p.oid, 'EXECUTE') FROM streamer), true),
		       coalesce((SELECT pg_get_userbyid(id) FROM streamer), ''),
		       coalesce((SELECT string_agg(DISTINCT r.rolname::text COLLATE "C", ', ' ORDER BY r.rolname::text COLLATE "C")
		                 FROM pg_proc q, aclexplode(q.proacl) a JOIN pg_roles r ON r.oid = a.grantee
		                 WHERE q.proname = 'pg_logical_emit_message' AND q.pronamespace = 'pg_catalog'::regnamespace
		                   AND a.privilege_type = 'EXECUTE' AND NOT r.rolsuper), '')
		FROM pg_proc p
		WHERE p.proname = 'pg_logical_emit_message' AND p.pronamespace = 'pg_catalog'::regnamespace
		ORDER BY 1`, slot)
	if err != nil {
		return queryFailed(name, err)
	}
	type overload struct {
		sig                       string
		mine, public              bool
		ownerMay, streamerMay     bool
		owner, streamer, grantees string
	}
	fns, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (overload, error) {
		var o overload
		return o, r.Scan(&o.sig, &o.mine, &o.public, &o.ownerMay, &o.owner, &o.streamerMay, &o.streamer, &o.grantees)
	})
	if err != nil {
		return queryFailed(name, err)
	}
	var role string
	if err := db.QueryRow(ctx, "SELECT current_user").Scan(&role); err != nil {
		return queryFailed(name, err)
	}
	grant := func(sig, to string) string {
		return fmt.Sprintf("GRANT EXECUTE ON FUNCTION %s TO %s;", sig, pgx.Identifier{to}.Sanitize())
	}
	// tidemark writes text messages; the bytea overload forges as well as the text one.
	var all []string
	var text *overload
	public := false
	for i, f := range fns {
		all = append(all, f.sig)
		public = public || f.public
		if text == nil && strings.HasPrefix(f.sig, "pg_logical_emit_message(boolean,text,text") {
			text = &fns[i]
		}
	}
	if text == nil {
		return fail(name, "use PostgreSQL 10 or later", "no pg_logical_emit_message(boolean, text, text) in pg_catalog")
	}
	// The roles granted any overload directly; members of a granted role may too.
	granted := "superusers and " + cmp.Or(text.grantees, "no other role")
	switch {
	case !text.mine:
		return fail(name, grant(text.sig, role),
			"role %s may not execute %s: replicate's heartbeats and tidemark snapshot fail (those that may: %s)", role, text.sig, granted)
	case !text.ownerMay:
		return fail(name, grant(text.sig, text.owner),
			"role %s, owner of the truncate trigger's function, may not execute %s: every TRUNCATE of a supplier partition fails", text.owner, text.sig)
	case !text.streamerMay:
		return fail(name, grant(text.sig, text.streamer),
			"role %s, which streams slot %s now, may not execute %s: its heartbeats fail, so an idle slot holds back WAL", text.streamer, slot, text.sig)
	case public:
		return warn(name, fmt.Sprintf("as a superuser: REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC; GRANT EXECUTE ON FUNCTION %s TO "+
			"each role that runs replicate or snapshot, or owns tidemark's functions, and is not a superuser",
			strings.Join(all, ", "), text.sig),
			"every role may write logical messages (PUBLIC may execute pg_logical_emit_message): one that can connect could have replicate publish forged snapshot rows and truncates")
	}
	return ok(name, "only %s may write logical messages", granted)
}

// column reads the one column of a query's rows.
func column[T any](ctx context.Context, db *pgxpool.Pool, sql string, args ...any) ([]T, error) {
	rows, err := db.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[T])
}
