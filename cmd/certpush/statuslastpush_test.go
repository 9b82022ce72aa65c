package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
)

// A host whose host key changed keeps serving the old certificate: status
// says why it is behind (the last push's error), not only that it is
// stale, and says nothing of the kind once it is aligned again.
func TestStatusNamesTheLastPushFailure(t *testing.T) {
	w := newWorld(t, 2)
	w.importNew()
	if code, _, _ := w.certpush("push"); code != 0 {
		t.Fatalf("push exited %d", code)
	}
	changed := w.fleet.Hosts[1]
	if err := changed.ReplaceHostKey(context.Background()); err != nil {
		t.Fatal(err)
	}
	w.importNew()
	if code, results, _ := w.pushJSON(); code != 1 || results[changed.Name] != "failed" {
		t.Fatalf("push to the changed host: %d %v", code, results)
	}
	code, stdout, _ := w.certpush("status", "--json")
	var st struct {
		Endpoints []struct {
			Host          string `json:"host"`
			State         string `json:"state"`
			LastPushError string `json:"last_push_error"`
		} `json:"endpoints"`
	}
	if err := json.Unmarshal([]byte(stdout), &st); code != 1 || err != nil || len(st.Endpoints) != 2 {
		t.Fatalf("status --json: %d %v %q", code, err, stdout)
	}
	for _, e := range st.Endpoints {
		switch e.Host {
		case changed.Name:
			if e.State != "stale" || !strings.Contains(e.LastPushError, "HOST KEY HAS CHANGED") {
				t.Errorf("%s: %q, last push error %q", e.Host, e.State, e.LastPushError)
			}
		default:
			if e.State != "aligned" || e.LastPushError != "" {
				t.Errorf("%s: %q, last push error %q", e.Host, e.State, e.LastPushError)
			}
		}
	}
	_, stdout, _ = w.certpush("status")
	if !strings.Contains(stdout, certName+" "+changed.Name+": last push failed: ") || !strings.Contains(stdout, "HOST KEY HAS CHANGED") {
		t.Errorf("status does not say why %s is behind:\n%s", changed.Name, stdout)
	}
}
