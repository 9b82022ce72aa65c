package testlb

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"net"
	"sync"
	"time"
)

// Load performs TLS handshakes against one address continuously, from
// several workers, and records each one: when it ended, the fingerprint
// served (SHA-256, lowercase hex), or its error.
type Load struct {
	addr, sni string
	stop      chan struct{}
	wg        sync.WaitGroup
	mu        sync.Mutex
	events    []Handshake
}

// Handshake is one handshake of a Load.
type Handshake struct {
	Start       time.Time
	End         time.Time
	Fingerprint string
	Err         error
}

// StartLoad starts workers goroutines, each handshaking in a loop (a new
// connection each time, no session resumption).
func StartLoad(addr, sni string, workers int) *Load {
	l := &Load{addr: addr, sni: sni, stop: make(chan struct{})}
	for range workers {
		l.wg.Go(l.worker)
	}
	return l
}

func (l *Load) worker() {
	cfg := &tls.Config{ServerName: l.sni, InsecureSkipVerify: true} //nolint:gosec // the fingerprint is what is compared
	for {
		select {
		case <-l.stop:
			return
		default:
		}
		h := Handshake{Start: time.Now()}
		d := net.Dialer{Timeout: 3 * time.Second}
		c, err := tls.DialWithDialer(&d, "tcp", l.addr, cfg)
		if err == nil {
			s := sha256.Sum256(c.ConnectionState().PeerCertificates[0].Raw)
			h.Fingerprint = hex.EncodeToString(s[:])
			c.Close()
		}
		h.Err = err
		h.End = time.Now()
		l.mu.Lock()
		l.events = append(l.events, h)
		l.mu.Unlock()
	}
}

// Stop ends the load and returns every handshake, in the order they
// ended.
func (l *Load) Stop() []Handshake {
	close(l.stop)
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Handshake(nil), l.events...)
}

// Stats sums up handshakes: how many, how many failed (with the first
// error), the slowest, and how long after since the first handshake served fp, after
// which none served anything else (-1 if never).
type Stats struct {
	Handshakes int
	Failed     int
	FirstErr   error
	UntilNew   time.Duration
	Slowest    time.Duration // the longest handshake
}

// Summarize computes Stats of events for the change to fp started at since.
func Summarize(events []Handshake, fp string, since time.Time) Stats {
	s := Stats{Handshakes: len(events), UntilNew: -1}
	lastOld := since
	for _, e := range events {
		s.Slowest = max(s.Slowest, e.End.Sub(e.Start))
		if e.Err != nil {
			s.Failed++
			if s.FirstErr == nil {
				s.FirstErr = e.Err
			}
			continue
		}
		if e.Fingerprint != fp && e.End.After(lastOld) {
			lastOld = e.End
		}
	}
	for _, e := range events {
		if e.Err == nil && e.Fingerprint == fp && !e.End.Before(lastOld) {
			s.UntilNew = e.End.Sub(since)
			break
		}
	}
	return s
}
