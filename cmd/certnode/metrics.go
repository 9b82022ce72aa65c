package main

import (
	"time"

	"github.com/certpush/certpush/internal/install"
	"github.com/certpush/certpush/internal/metrics"
)

// certMetrics describes the installed certificates.
func certMetrics(s *metrics.Set, st []install.Status) {
	for _, c := range st {
		l := metrics.Labels{"cert": c.Cert}
		s.Gauge("certnode_cert_installed", "1 if a version of the certificate is installed.", l, metrics.Bool(c.ID != ""))
		s.Gauge("certnode_cert_placeholder", "1 if what is installed is certnode bootstrap's self-signed placeholder.", l, metrics.Bool(c.Placeholder))
		if !c.NotAfter.IsZero() {
			s.Gauge("certnode_cert_not_after_timestamp_seconds", "Not-after time of the installed certificate.", l, float64(c.NotAfter.Unix()))
		}
		s.Gauge("certnode_cert_ok", "1 if the certificate is installed and not expiring within the check's days.", l, metrics.Bool(c.Problem == ""))
	}
}

// installMetrics describes an install run and the certificates after it.
func installMetrics(results []install.Result, st []install.Status, now time.Time) *metrics.Set {
	var s metrics.Set
	for _, r := range results {
		for _, res := range []string{install.Installed, install.Unchanged, install.Nothing, install.Refused, install.RolledBack, install.Failed} {
			s.Gauge("certnode_install_result", "1 for the result of the last install run.", metrics.Labels{"cert": r.Cert, "result": res}, metrics.Bool(r.Result == res))
		}
		s.Gauge("certnode_install_last_run_timestamp_seconds", "Time of the last install run.", metrics.Labels{"cert": r.Cert}, float64(now.Unix()))
	}
	certMetrics(&s, st)
	return &s
}
