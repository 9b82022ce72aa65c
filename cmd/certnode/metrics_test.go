package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"path/filepath"
	"testing"
	"time"

	"github.com/certpush/certpush/internal/bundle"
	"github.com/certpush/certpush/internal/promtest"
)

func TestMetricsFiles(t *testing.T) {
	dir := t.TempDir()
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	s := bundle.NewSigner(key)
	incoming := filepath.Join(dir, "incoming")
	cfgPath := writeConfig(t, dir, incoming, s)
	notAfter := time.Now().Add(10 * 24 * time.Hour).Truncate(time.Second)
	id := pushBundle(t, incoming, s, notAfter)
	prom := filepath.Join(dir, "certnode.prom")

	if code, stdout, stderr := certnode(t, "--config", cfgPath, "install", "--metrics-file", prom, "--id", id, "example.com"); code != 0 {
		t.Fatalf("install: %d %s %s", code, stdout, stderr)
	}
	fams := promtest.Parse(t, prom)
	for _, m := range fams["certnode_install_result"].GetMetric() {
		var result string
		for _, l := range m.GetLabel() {
			if l.GetName() == "result" {
				result = l.GetValue()
			}
		}
		if want := result == "installed"; (m.GetGauge().GetValue() == 1) != want {
			t.Errorf("certnode_install_result{result=%q} = %v", result, m.GetGauge().GetValue())
		}
	}
	if v := fams["certnode_cert_not_after_timestamp_seconds"].GetMetric()[0].GetGauge().GetValue(); int64(v) != notAfter.Unix() {
		t.Errorf("not_after = %v, want %d", v, notAfter.Unix())
	}

	if code, _, _ := certnode(t, "--config", cfgPath, "check", "--days", "30", "--metrics-file", prom); code != 1 {
		t.Errorf("check --days 30 exited %d, want 1", code)
	}
	fams = promtest.Parse(t, prom)
	if v := fams["certnode_cert_ok"].GetMetric()[0].GetGauge().GetValue(); v != 0 {
		t.Errorf("certnode_cert_ok = %v for a certificate expiring within 30 days", v)
	}
}
