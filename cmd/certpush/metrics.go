package main

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/certpush/certpush/internal/atomicfile"
	"github.com/certpush/certpush/internal/bundle"
	"github.com/certpush/certpush/internal/metrics"
	"github.com/certpush/certpush/internal/push"
	"github.com/certpush/certpush/internal/verify"
)

// hostState is what the management server remembers of each host, for
// metrics: <state_dir>/hosts.json.
type hostState struct {
	LastSuccess time.Time `json:"last_success"`
	BundleID    string    `json:"bundle_id"`
	LastResult  string    `json:"last_result"`
	// LastError is the last push's error when it failed, for status.
	LastError string `json:"last_error,omitempty"`
}

type fleetState map[string]map[string]hostState // cert -> host -> state

func loadFleetState(stateDir string) (fleetState, error) {
	data, err := os.ReadFile(filepath.Join(stateDir, "hosts.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return fleetState{}, nil
	}
	if err != nil {
		return nil, err
	}
	st := fleetState{}
	if err := json.Unmarshal(data, &st); err != nil {
		return nil, err
	}
	return st, nil
}

// record updates the state with a push's results and saves it.
func (st fleetState) record(stateDir string, rep certReport, now time.Time) error {
	hosts := st[rep.Cert]
	if hosts == nil {
		hosts = map[string]hostState{}
		st[rep.Cert] = hosts
	}
	for _, r := range rep.Results {
		if r.Result == push.Planned || r.Result == push.Skipped {
			continue
		}
		h := hosts[r.Host]
		h.LastResult = r.Result
		h.LastError = ""
		if r.Result == push.Failed {
			h.LastError = r.ErrorText
		}
		if r.OK() {
			h.LastSuccess = now.UTC()
			h.BundleID = r.BundleID
		}
		hosts[r.Host] = h
	}
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(stateDir, "hosts.json"), data, 0o600)
}

// pushMetrics describes the fleet after a push.
func pushMetrics(st fleetState, reports []certReport, bundles map[string]*bundle.Bundle) *metrics.Set {
	var s metrics.Set
	for _, rep := range reports {
		if b := bundles[rep.Cert]; b != nil {
			s.Gauge("certpush_cert_not_after_timestamp_seconds", "Not-after time of the certificate's current bundle.",
				metrics.Labels{"cert": rep.Cert}, float64(b.Manifest.NotAfter.Unix()))
		}
		if rep.RenewalDue != nil {
			s.Gauge("certpush_cert_renewal_due_timestamp_seconds", "When the certificate is next due for renewal (CA's renewal window or threshold), as of the last renew or sync.",
				metrics.Labels{"cert": rep.Cert}, float64(rep.RenewalDue.Unix()))
		}
		counts := map[string]int{}
		for _, r := range rep.Results {
			counts[r.Result]++
			s.Gauge("certpush_host_aligned", "1 if the host has the current bundle after the last push.",
				metrics.Labels{"cert": rep.Cert, "host": r.Host}, metrics.Bool(r.Result == push.Installed || r.Result == push.Unchanged || r.Result == push.Uploaded))
			if hs, ok := st[rep.Cert][r.Host]; ok && !hs.LastSuccess.IsZero() {
				s.Gauge("certpush_host_last_success_timestamp_seconds", "Time of the last successful push to the host.",
					metrics.Labels{"cert": rep.Cert, "host": r.Host}, float64(hs.LastSuccess.Unix()))
			}
		}
		for _, res := range []string{push.Installed, push.Uploaded, push.Unchanged, push.Failed, push.Skipped, push.Planned} {
			s.Gauge("certpush_hosts", "Hosts by result of the last push.", metrics.Labels{"cert": rep.Cert, "result": res}, float64(counts[res]))
		}
	}
	return &s
}

// statusMetrics describes what the endpoints serve.
func statusMetrics(reports []verify.Report) *metrics.Set {
	// The current bundles' own metrics come from push: node_exporter
	// refuses the same series from two files.
	var s metrics.Set
	counts := map[[2]string]int{}
	for _, r := range reports {
		l := metrics.Labels{"cert": r.Cert, "host": r.Host, "endpoint": r.Address}
		s.Gauge("certpush_endpoint_aligned", "1 if the endpoint serves the current bundle.", l, metrics.Bool(r.State == verify.Aligned))
		if !r.NotAfter.IsZero() {
			s.Gauge("certpush_endpoint_not_after_timestamp_seconds", "Not-after time of the certificate the endpoint serves.", l, float64(r.NotAfter.Unix()))
		}
		counts[[2]string{r.Cert, r.State}]++
	}
	for k, n := range counts {
		s.Gauge("certpush_endpoints", "Endpoints by state.", metrics.Labels{"cert": k[0], "state": k[1]}, float64(n))
	}
	return &s
}
