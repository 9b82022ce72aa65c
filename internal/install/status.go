package install

import (
	"context"
	"fmt"
	"time"

	"github.com/certpush/certpush/internal/bundle"
	"github.com/certpush/certpush/internal/verify"
)

// Status is what is installed for one configured certificate.
type Status struct {
	Cert        string    `json:"cert"`
	ID          string    `json:"id"`
	Fingerprint string    `json:"fingerprint"`
	Domains     []string  `json:"domains"`
	NotAfter    time.Time `json:"not_after,omitzero"`
	DaysLeft    int       `json:"days_left"`
	Live        string    `json:"live"` // target of live/<name>
	// Placeholder says that what is installed is certnode bootstrap's
	// self-signed stand-in, not a real certificate.
	Placeholder bool `json:"placeholder,omitempty"`
	// Endpoint is the first verify endpoint; Served the fingerprint it
	// serves and Serving whether that is the installed certificate
	// (filled by Status only).
	Endpoint string `json:"endpoint,omitempty"`
	Served   string `json:"served,omitempty"`
	Serving  bool   `json:"serving"`
	Error    string `json:"error,omitempty"`
	// Problem is set by Check for a certificate that needs attention.
	Problem string `json:"problem,omitempty"`
}

// installedStatus describes what live/<name> points at, without probes.
func (in *Installer) installedStatus(name string) Status {
	s := Status{Cert: name}
	cur, err := in.current(name)
	switch {
	case err != nil:
		s.Error = err.Error()
	case cur == nil:
		s.Error = "nothing installed"
	case cur.Manifest == nil:
		s.Live = cur.Target
		s.ID = cur.ID
		s.Error = fmt.Sprintf("live/%s points to %s, which is not a readable version", name, cur.Target)
	default:
		m := cur.Manifest
		s.ID, s.Live, s.Fingerprint, s.Domains, s.NotAfter = m.ID, cur.Target, m.Fingerprint, m.Domains, m.NotAfter
		s.DaysLeft = int(m.NotAfter.Sub(in.now()).Hours() / 24)
		s.Placeholder = m.Source == bundle.SourcePlaceholder
	}
	return s
}

// Status reports, for every configured certificate, what is installed and
// whether the first verify endpoint serves it.
func (in *Installer) Status(ctx context.Context) ([]Status, error) {
	var out []Status
	for _, name := range in.Config.Names() {
		s := in.installedStatus(name)
		c := in.Config.Certs[name]
		if len(c.Verify) > 0 {
			s.Endpoint = c.Verify[0]
			served, err := verify.Probe(ctx, s.Endpoint, sniFor(c, s.Domains), c.VerifyTimeout)
			if err != nil {
				if s.Error == "" {
					s.Error = err.Error()
				}
			} else {
				s.Served = served.Fingerprint
				s.Serving = s.Fingerprint != "" && served.Fingerprint == s.Fingerprint
			}
		}
		out = append(out, s)
	}
	return out, nil
}

// Check reports every configured certificate, with Problem set for those
// that expire within days or have nothing (readable) installed.
func (in *Installer) Check(days int) ([]Status, error) {
	now := in.now()
	limit := now.Add(time.Duration(days) * 24 * time.Hour)
	var out []Status
	for _, name := range in.Config.Names() {
		s := in.installedStatus(name)
		switch {
		case s.Fingerprint == "":
			s.Problem = s.Error
		case s.Placeholder:
			s.Problem = "only the bootstrap placeholder is installed: waiting for the first push"
		case now.After(s.NotAfter):
			s.Problem = fmt.Sprintf("expired on %s", s.NotAfter.UTC().Format(time.RFC3339))
		case limit.After(s.NotAfter):
			s.Problem = fmt.Sprintf("expires in %d days (%s), within %d", s.DaysLeft, s.NotAfter.UTC().Format(time.RFC3339), days)
		}
		out = append(out, s)
	}
	return out, nil
}
