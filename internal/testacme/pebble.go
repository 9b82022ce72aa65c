package testacme

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// findProgram returns where scripts/deps.sh installs pebble's program
// name with go install, when it is there, else Debian's /usr/bin/name.
func findProgram(name string) string {
	var dirs []string
	if d := os.Getenv("GOBIN"); d != "" {
		dirs = append(dirs, d)
	}
	if gp := os.Getenv("GOPATH"); gp != "" {
		dirs = append(dirs, filepath.Join(filepath.SplitList(gp)[0], "bin"))
	}
	if home, err := os.UserHomeDir(); err == nil {
		dirs = append(dirs, filepath.Join(home, "go", "bin"))
	}
	for _, d := range dirs {
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	return "/usr/bin/" + name
}

// ErrOld is returned by RequireModern for a pebble without profiles and
// ARI (Debian's 2.4).
var ErrOld = errors.New("pebble too old: no profiles or renewal information (scripts/deps.sh installs pebble v2.10.3)")

// Directory is pebble's directory document, as far as the tests look.
type Directory struct {
	RenewalInfo string `json:"renewalInfo"`
	Meta        struct {
		Profiles                map[string]string `json:"profiles"`
		ExternalAccountRequired bool              `json:"externalAccountRequired"`
		CAAIdentities           []string          `json:"caaIdentities"`
	} `json:"meta"`
}

// Directory fetches pebble's directory.
func (s *Server) Directory(ctx context.Context) (*Directory, error) {
	body, err := s.get(ctx, s.DirectoryURL)
	if err != nil {
		return nil, err
	}
	var d Directory
	if err := json.Unmarshal(body, &d); err != nil {
		return nil, fmt.Errorf("pebble directory: %w", err)
	}
	return &d, nil
}

// RequireModern returns ErrOld when the running pebble offers no profiles
// or no renewal information.
func (s *Server) RequireModern(ctx context.Context) error {
	d, err := s.Directory(ctx)
	if err != nil {
		return err
	}
	if d.RenewalInfo == "" || len(d.Meta.Profiles) == 0 {
		return ErrOld
	}
	return nil
}

// AlternateRoot returns alternate root i (1-based; 0 is Root) in PEM.
func (s *Server) AlternateRoot(ctx context.Context, i int) ([]byte, error) {
	return s.get(ctx, s.PebbleManagementURL+"/roots/"+strconv.Itoa(i))
}

// SetRenewalInfo makes pebble answer ARI requests for cert (its serial)
// with the suggested window start..end.
func (s *Server) SetRenewalInfo(ctx context.Context, cert *x509.Certificate, start, end time.Time) error {
	ari, err := json.Marshal(map[string]any{"suggestedWindow": map[string]string{
		"start": start.UTC().Format(time.RFC3339), "end": end.UTC().Format(time.RFC3339),
	}})
	if err != nil {
		return err
	}
	body, err := json.Marshal(map[string]string{
		"certificate": string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})),
		"ariResponse": string(ari),
	})
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.PebbleManagementURL+"/set-renewal-info/", bytes.NewReader(body))
	if err != nil {
		return err
	}
	resp, err := s.httpc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("pebble set-renewal-info: %s: %s", resp.Status, msg)
	}
	return nil
}

// CertStatus is what pebble's management API says about a certificate.
type CertStatus struct {
	Status    string // "Valid" or "Revoked"
	Serial    string
	Reason    *uint
	RevokedAt string
}

// CertStatus asks pebble for the status of the certificate with serial.
func (s *Server) CertStatus(ctx context.Context, cert *x509.Certificate) (*CertStatus, error) {
	body, err := s.get(ctx, s.PebbleManagementURL+"/cert-status-by-serial/"+cert.SerialNumber.Text(16))
	if err != nil {
		return nil, err
	}
	var st CertStatus
	if err := json.Unmarshal(body, &st); err != nil {
		return nil, fmt.Errorf("pebble cert status: %w", err)
	}
	return &st, nil
}

// LogCount returns how many lines of pebble's log contain substr, e.g.
// "GET /draft-ietf-acme-ari-03/renewalInfo/" for the renewal information
// requests, or "is a replacement of" for orders accepted with replaces.
func (s *Server) LogCount(substr string) (int, error) {
	data, err := os.ReadFile(filepath.Join(s.Dir, "pebble.log"))
	if err != nil {
		return 0, err
	}
	return strings.Count(string(data), substr), nil
}

// Log markers for LogCount.
const (
	LogRenewalInfo = "GET /draft-ietf-acme-ari-03/renewalInfo/"
	LogReplacement = "is a replacement of"
	LogNewOrder    = "POST /order-plz"
)

// newChallTestSrv reports whether prog takes -dnsserver (challtestsrv
// 1.4, with pebble 2.10) rather than -dns01 (Debian's pebble 2.4).
func newChallTestSrv(prog string) bool {
	out, _ := exec.Command(prog, "-h").CombinedOutput()
	return bytes.Contains(out, []byte("-dnsserver"))
}

// Pause freezes pebble (SIGSTOP): its port still accepts connections but
// nothing answers, as a CA that is down or overloaded looks to a client.
// Resume lets it go on. challtestsrv keeps running.
func (s *Server) Pause() error { return s.signalPebble(syscall.SIGSTOP) }

// Resume undoes Pause (SIGCONT).
func (s *Server) Resume() error { return s.signalPebble(syscall.SIGCONT) }

func (s *Server) signalPebble(sig syscall.Signal) error {
	if s.pebble == nil || s.pebble.Exited() {
		return errors.New("pebble is not running")
	}
	return syscall.Kill(s.pebble.Pid(), sig)
}
