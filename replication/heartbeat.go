package replication

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
)

// heartbeat writes a non-transactional logical message every Heartbeat on a normal
// connection of its own, so the slot advances even when the published tables are idle.
func (r *Replicator) heartbeat(hbCtx context.Context) error {
	ctx := hbCtx
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
			r.log.Debug("heartbeat", "err", err)
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
			_ = conn.Close(cctx)
			cancel()
			conn = nil
		}
	}
}
