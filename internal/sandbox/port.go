package sandbox

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strconv"
	"time"
)

// PostgreSQL cannot bind port 0 and report what it got, so the sandbox chooses its port, and
// two things keep that choice from colliding:
//
//   - Ports come from below the kernel's ephemeral range, from which port-0 listeners (the
//     sandbox's NATS, the commands' --http-addr :0) and outgoing connections take theirs. Only a
//     process that binds a port by number can take one of ours.
//   - A port is reserved with a lock that other test processes honour (lockPort, an abstract
//     unix socket) and that is held for the cluster's life, across restarts; the kernel drops
//     it when the process dies.
//
// Anything else that binds the port (another PostgreSQL, say) makes the server fail to start
// with "Address already in use", and StartPostgres tries another port.

// errPortInUse: a server could not bind its port, which another process holds.
var errPortInUse = errors.New("port in use")

// restartWait bounds how long a restart waits for a server's port to be free again: it must
// bind the same port, so that clients reconnect to the URL they know.
var restartWait = 10 * time.Second

const (
	// portAttempts bounds how many ports StartPostgres tries before giving up.
	portAttempts = 5
	// portCandidates bounds how many ports reservePort looks at for one attempt.
	portCandidates = 200
	// lowestPort is the lowest port chosen: above the well-known and most registered ones.
	lowestPort = 20000
)

// reserve is reservePort; tests replace it to hand out a taken port.
var reserve = reservePort

// reservePort picks a port below the ephemeral range that no other test process has reserved
// and nothing listens on, and returns it with its lock, held until the closer is closed.
func reservePort() (int, io.Closer, error) {
	lo, hi := portRange()
	var lastErr error
	for i := 0; i < portCandidates; i++ {
		port := lo + rand.IntN(hi-lo)
		lock, err := lockPort(port)
		if err != nil {
			lastErr = err
			continue
		}
		// A check, not a claim: the lock keeps other test processes off this port, and outside
		// the ephemeral range nothing else takes it by chance between this check and the bind.
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			_ = lock.Close()
			lastErr = err
			continue
		}
		_ = l.Close()
		return port, lock, nil
	}
	return 0, nil, fmt.Errorf("no free port in %d-%d after %d tries: %w", lo, hi-1, portCandidates, lastErr)
}

// portRange is the range [lo, hi) the sandbox's PostgreSQL ports come from: from lowestPort
// up to the ephemeral range, or above it when that leaves too few.
func portRange() (lo, hi int) {
	elo, ehi := ephemeralRange()
	switch {
	case elo-lowestPort >= 1000:
		return lowestPort, elo
	case 65536-(ehi+1) >= 1000:
		return ehi + 1, 65536
	default:
		return 1024, 65536 // no room outside it: the lock and the retry must do
	}
}
