package acme

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	legoacme "github.com/go-acme/lego/v5/acme"

	"github.com/certpush/certpush/internal/atomicfile"
)

// Bounds of the wait before renewal information is asked again: the CA's
// Retry-After, or DefaultARIRetry when it sends none, kept within
// [MinARIRetry, MaxARIRetry].
const (
	DefaultARIRetry = 6 * time.Hour
	MinARIRetry     = time.Minute
	MaxARIRetry     = 24 * time.Hour
	// noARIRetry is the wait before a CA without ARI is asked again.
	noARIRetry = time.Hour
)

// ARIState is what was last learnt of the CA's renewal information for
// one certificate, kept so that a run before NextFetch does not ask again:
// <state_dir>/ari/<name>.json.
type ARIState struct {
	// Serial is the certificate's serial number in hex.
	Serial         string    `json:"serial"`
	Start          time.Time `json:"window_start,omitzero"`
	End            time.Time `json:"window_end,omitzero"`
	ExplanationURL string    `json:"explanation_url,omitempty"`
	// NoARI records that the CA offered no renewal information.
	NoARI     bool      `json:"no_ari,omitempty"`
	FetchedAt time.Time `json:"fetched_at"`
	// NextFetch is FetchedAt plus the CA's Retry-After.
	NextFetch time.Time `json:"next_fetch"`
}

// ARIStatePath is where the renewal information of certificate name is
// kept under stateDir.
func ARIStatePath(stateDir, name string) string {
	return filepath.Join(stateDir, "ari", name+".json")
}

// LoadARIState reads the state at path; nil when there is none.
func LoadARIState(path string) (*ARIState, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var st ARIState
	if err := json.Unmarshal(data, &st); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &st, nil
}

func (st *ARIState) save(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(path, append(data, '\n'), 0o600)
}

func (st *ARIState) window() *RenewalWindow {
	if st.NoARI {
		return nil
	}
	return &RenewalWindow{Start: st.Start, End: st.End, ExplanationURL: st.ExplanationURL, RetryAfter: time.Until(st.NextFetch)}
}

// ARIResult is the outcome of CachedRenewalInfo.
type ARIResult struct {
	// Window is the suggested window; nil when the CA offers no ARI or
	// could not be asked (and nothing is stored for the certificate).
	Window *RenewalWindow
	// Asked tells whether the CA was asked in this call; when not, Window
	// is the stored one and NextFetch says when it will be asked again.
	Asked     bool
	NextFetch time.Time
}

// CachedRenewalInfo returns the CA's renewal window for cert, asking the
// CA only when the state at path is for another certificate or its
// NextFetch has come. A failed request returns the stored window of the
// same certificate, if any, with the error.
func (c *Client) CachedRenewalInfo(ctx context.Context, path string, cert *x509.Certificate, now time.Time) (ARIResult, error) {
	serial := cert.SerialNumber.Text(16)
	st, err := LoadARIState(path)
	if err != nil {
		c.log.Warn("renewal information state unreadable; asking the CA", "path", path, "error", err)
		st = nil
	}
	if st != nil && st.Serial == serial && now.Before(st.NextFetch) {
		return ARIResult{Window: st.window(), NextFetch: st.NextFetch}, nil
	}
	w, err := c.RenewalInfo(ctx, cert)
	switch {
	case errors.Is(err, ErrNoARI):
		ns := &ARIState{Serial: serial, NoARI: true, FetchedAt: now.UTC(), NextFetch: now.Add(noARIRetry).UTC()}
		if serr := ns.save(path); serr != nil {
			return ARIResult{Asked: true}, serr
		}
		return ARIResult{Asked: true, NextFetch: ns.NextFetch}, ErrNoARI
	case err != nil:
		res := ARIResult{Asked: true}
		if st != nil && st.Serial == serial {
			res.Window = st.window()
		}
		return res, err
	}
	retry := w.RetryAfter
	if retry <= 0 {
		retry = DefaultARIRetry
	}
	retry = min(max(retry, MinARIRetry), MaxARIRetry)
	ns := &ARIState{Serial: serial, Start: w.Start.UTC(), End: w.End.UTC(), ExplanationURL: w.ExplanationURL, FetchedAt: now.UTC(), NextFetch: now.Add(retry).UTC()}
	if err := ns.save(path); err != nil {
		return ARIResult{Window: w, Asked: true}, err
	}
	return ARIResult{Window: w, Asked: true, NextFetch: ns.NextFetch}, nil
}

// Revocation reasons (RFC 5280 section 5.3.1) that ACME accepts, by the
// names the CLI takes.
var RevocationReasons = map[string]uint{
	"unspecified":          legoacme.CRLReasonUnspecified,
	"keyCompromise":        legoacme.CRLReasonKeyCompromise,
	"affiliationChanged":   legoacme.CRLReasonAffiliationChanged,
	"superseded":           legoacme.CRLReasonSuperseded,
	"cessationOfOperation": legoacme.CRLReasonCessationOfOperation,
	"privilegeWithdrawn":   legoacme.CRLReasonPrivilegeWithdrawn,
}

// Revoke asks the CA to revoke the PEM certificate certPEM (the leaf,
// issued to this account) for reason.
func (c *Client) Revoke(ctx context.Context, certPEM []byte, reason uint) error {
	obtainMu.Lock()
	defer obtainMu.Unlock()
	cl, err := c.legoClient(ctx, c.acct)
	if err != nil {
		return err
	}
	if err := cl.Certificate.RevokeWithReason(ctx, certPEM, &reason); err != nil {
		return fmt.Errorf("revoke: %w", err)
	}
	return nil
}
