package replication

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// heartbeat writes a non-transactional logical message every Heartbeat on a normal
// connection of its own, so the slot advances even when the published tables are idle.
// Failures are logged at debug level (a server restarting is not news), but a role that may
// not write logical messages is warned of once: without heartbeats an idle slot holds WAL.
// The connection is kept through errors the server answers (a refusal repeats every tick)
// and made anew only once it is closed.
func (r *Replicator) heartbeat(hbCtx context.Context) error {
	ctx := hbCtx
	warned := false
	t := time.NewTicker(r.cfg.Heartbeat)
	defer t.Stop()
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
			defer cancel()
			_ = conn.Close(cctx)
		}
	}()
	for {
		select {
		case <-hbCtx.Done():
			return nil
		case <-t.C:
		}
		if conn == nil {
			c, err := pgx.Connect(hbCtx, r.cfg.ConnString)
			if err != nil {
				r.log.Debug("heartbeat connect", "err", err)
				continue
			}
			conn = c
		}
		qctx, qcancel := context.WithTimeout(hbCtx, 5*time.Second)
		_, err := conn.Exec(qctx, "SELECT pg_logical_emit_message(false, 'tidemark.heartbeat', now()::text)")
		qcancel()
		if err != nil && hbCtx.Err() == nil {
			var pgErr *pgconn.PgError
			if !warned && errors.As(err, &pgErr) && pgErr.Code == "42501" {
				warned = true
				r.log.Warn("heartbeats fail: the role may not execute pg_logical_emit_message, so the slot "+
					"advances only with changes of the published tables (see tidemark doctor's logical_messages)", "err", err)
			}
			r.log.Debug("heartbeat", "err", err)
			if conn.IsClosed() || !errors.As(err, &pgErr) {
				cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
				_ = conn.Close(cctx)
				cancel()
				conn = nil
			}
		}
	}
}
