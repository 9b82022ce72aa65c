package verify

import (
	"context"
	"crypto/x509"
	"sync"
	"time"
)

// States of an endpoint, compared with the bundle it should serve.
const (
	Aligned     = "aligned"     // serves the current bundle
	Stale       = "stale"       // serves another valid certificate for the name
	Expired     = "expired"     // serves an expired certificate
	WrongName   = "wrong_name"  // serves a certificate that does not cover the name
	Untrusted   = "untrusted"   // serves a certificate no trusted root vouches for
	Unreachable = "unreachable" // no TLS handshake
)

// Endpoint is a TLS endpoint that should serve the certificate with the
// fingerprint Want.
type Endpoint struct {
	Cert    string `json:"cert"`
	Host    string `json:"host"`
	Address string `json:"address"`
	SNI     string `json:"sni"`
	Want    string `json:"want"` // SHA-256 fingerprint, lowercase hex
	// Trusted, when not nil, says whether a served leaf and the
	// intermediates sent with it chain to a trusted root (nil error).
	Trusted func(leaf *x509.Certificate, chain []*x509.Certificate) error `json:"-"`
}

// Report is the state of one endpoint.
type Report struct {
	Endpoint
	State    string            `json:"state"`
	Served   string            `json:"served,omitempty"` // SHA-256 fingerprint served
	NotAfter time.Time         `json:"not_after,omitempty"`
	DaysLeft int               `json:"days_left"`
	Leaf     *x509.Certificate `json:"-"`
	Error    string            `json:"error,omitempty"`
}

// Survey probes every endpoint, at most parallel at once, each within
// timeout, and classifies what it serves. Reports come in the order of eps.
// progress, when not nil, is called after each endpoint, serialized.
func Survey(ctx context.Context, eps []Endpoint, parallel int, timeout time.Duration, now time.Time, progress func(done, total int, r Report)) []Report {
	if parallel < 1 {
		parallel = 1
	}
	out := make([]Report, len(eps))
	sem := make(chan struct{}, parallel)
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		done int
	)
	for i, ep := range eps {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			out[i] = classify(ctx, ep, timeout, now)
			if progress != nil {
				mu.Lock()
				done++
				progress(done, len(eps), out[i])
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return out
}

func classify(ctx context.Context, ep Endpoint, timeout time.Duration, now time.Time) Report {
	r := Report{Endpoint: ep}
	s, err := Probe(ctx, ep.Address, ep.SNI, timeout)
	if err != nil {
		r.State = Unreachable
		r.Error = err.Error()
		return r
	}
	r.Leaf = s.Leaf
	r.Served = s.Fingerprint
	r.NotAfter = s.Leaf.NotAfter.UTC()
	r.DaysLeft = int(s.Leaf.NotAfter.Sub(now).Hours() / 24)
	var untrusted error
	if ep.Trusted != nil && s.Fingerprint != ep.Want {
		untrusted = ep.Trusted(s.Leaf, s.Chain)
	}
	switch {
	case s.Fingerprint == ep.Want:
		r.State = Aligned
	case now.After(s.Leaf.NotAfter):
		r.State = Expired
	case ep.SNI != "" && s.Leaf.VerifyHostname(ep.SNI) != nil:
		r.State = WrongName
	case untrusted != nil:
		r.State = Untrusted
		r.Error = untrusted.Error()
	default:
		r.State = Stale
	}
	return r
}
