package wire

import (
	"encoding/json"
	"testing"
	"time"
)

func TestValidID(t *testing.T) {
	testCases := []struct {
		desc string
		id   string
		want bool
	}{
		{desc: "good", id: "0123456789abcdef", want: true},
		{desc: "short", id: "0123456789abcde"},
		{desc: "long", id: "0123456789abcdef0"},
		{desc: "upper", id: "0123456789ABCDEF"},
		{desc: "traversal", id: "../../etc/passwd"},
		{desc: "empty", id: ""},
		{desc: "dot", id: "0123456789abcde."},
	}
	for _, tc := range testCases {
		t.Run(tc.desc, func(t *testing.T) {
			if got := ValidID(tc.id); got != tc.want {
				t.Errorf("ValidID(%q) = %v, want %v", tc.id, got, tc.want)
			}
		})
	}
}

func TestStatusFile(t *testing.T) {
	if got, want := StatusFile("example.com"), ".status/example.com.json"; got != want {
		t.Errorf("StatusFile = %q, want %q", got, want)
	}
}

func TestSucceeded(t *testing.T) {
	for r, want := range map[string]bool{Installed: true, Unchanged: true, Nothing: true, Refused: false, RolledBack: false, Failed: false, "": false} {
		if got := Succeeded(r); got != want {
			t.Errorf("Succeeded(%q) = %v, want %v", r, got, want)
		}
	}
}

// The JSON shape is the protocol: certpush parses what certnode prints.
func TestInstallOutputShape(t *testing.T) {
	out := InstallOutput{Results: []InstallResult{{Cert: "example.com", Result: Installed, ID: "0123456789abcdef", NotAfter: time.Date(2027, 1, 2, 3, 4, 5, 0, time.UTC)}}}
	b, err := json.Marshal(out)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"results":[{"cert":"example.com","result":"installed","id":"0123456789abcdef","previous":"","fingerprint":"","not_after":"2027-01-02T03:04:05Z","error":""}]}`
	if string(b) != want {
		t.Errorf("got  %s\nwant %s", b, want)
	}
	var back InstallOutput
	if err := json.Unmarshal(b, &back); err != nil || len(back.Results) != 1 || back.Results[0].ID != out.Results[0].ID {
		t.Errorf("round trip: %v %+v", err, back)
	}
}
