package acme

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/go-acme/lego/v5/acme/api"
)

// RenewalWindow is the CA's ACME Renewal Information for one certificate
// (RFC 9773): renew between Start and End.
type RenewalWindow struct {
	Start, End time.Time
	// ExplanationURL, when set, says why the CA suggests this window (e.g.
	// a revocation ahead).
	ExplanationURL string
	// RetryAfter is when to ask again, as the CA suggests; 0 if it did not
	// say.
	RetryAfter time.Duration
}

// RenewalInfo asks the CA when cert should be renewed. It returns ErrNoARI
// when the CA's directory offers no renewal information. cert must be one
// issued by this CA (its serial and authority key id identify it).
func (c *Client) RenewalInfo(ctx context.Context, cert *x509.Certificate) (*RenewalWindow, error) {
	if cert == nil {
		return nil, fmt.Errorf("%w: no certificate", ErrConfig)
	}
	cl, err := c.legoClient(ctx, c.acct)
	if err != nil {
		return nil, err
	}
	info, err := cl.Certificate.GetRenewalInfo(ctx, cert)
	if errors.Is(err, api.ErrNoARI) {
		return nil, ErrNoARI
	}
	if err != nil {
		return nil, fmt.Errorf("acme renewal info: %w", err)
	}
	w := &RenewalWindow{
		Start:          info.SuggestedWindow.Start,
		End:            info.SuggestedWindow.End,
		ExplanationURL: info.ExplanationURL,
		RetryAfter:     info.RetryAfter,
	}
	if w.Start.IsZero() || w.End.IsZero() || !w.End.After(w.Start) {
		return nil, fmt.Errorf("acme renewal info: invalid suggested window %s .. %s", w.Start.Format(time.RFC3339), w.End.Format(time.RFC3339))
	}
	return w, nil
}

// RenewalDecision says whether a certificate is due for renewal, and why.
type RenewalDecision struct {
	Due bool
	// Reason is one human sentence, e.g. "expires in 719h; below the
	// renewal threshold of 720h".
	Reason string
	// RenewAt is when it becomes (or became) due: the earlier of the
	// threshold point and the start of the ARI window.
	RenewAt time.Time
	// Remaining is the lifetime left at the time of the decision.
	Remaining time.Duration
	// Threshold is the renew_before in effect.
	Threshold time.Duration
	// ARI tells whether a renewal window was taken into account.
	ARI bool
}

// ShortLifetime is the lifetime up to which the default threshold is half
// of it rather than a third: a six-day certificate renews with three days
// left, which leaves room for a failed run or two.
const ShortLifetime = 10 * 24 * time.Hour

// DefaultThreshold is the renew_before used when none is configured: a
// third of lifetime, or half of it for lifetimes of ShortLifetime or less.
func DefaultThreshold(lifetime time.Duration) time.Duration {
	if lifetime <= ShortLifetime {
		return lifetime / 2
	}
	return lifetime / 3
}

// Due decides whether cert should be renewed at now: when its remaining
// lifetime is below renewBefore (0 or less: DefaultThreshold), or when now
// is inside or after ari's suggested window (nil: no ARI).
func Due(cert *x509.Certificate, renewBefore time.Duration, ari *RenewalWindow, now time.Time) RenewalDecision {
	lifetime := cert.NotAfter.Sub(cert.NotBefore)
	threshold := renewBefore
	if threshold <= 0 {
		threshold = DefaultThreshold(lifetime)
	}
	d := RenewalDecision{
		Remaining: cert.NotAfter.Sub(now),
		Threshold: threshold,
		RenewAt:   cert.NotAfter.Add(-threshold),
		ARI:       ari != nil,
	}
	if ari != nil && ari.Start.Before(d.RenewAt) {
		d.RenewAt = ari.Start
	}
	left := human(d.Remaining)
	switch {
	case !now.Before(cert.NotAfter):
		d.Due = true
		d.Reason = fmt.Sprintf("expired at %s", cert.NotAfter.UTC().Format(time.RFC3339))
	case d.Remaining < threshold:
		d.Due = true
		d.Reason = fmt.Sprintf("expires in %s; below the renewal threshold of %s", left, human(threshold))
	case ari != nil && !now.Before(ari.End):
		d.Due = true
		d.Reason = fmt.Sprintf("past the CA's renewal window (ended %s)", ari.End.UTC().Format(time.RFC3339))
	case ari != nil && !now.Before(ari.Start):
		d.Due = true
		d.Reason = fmt.Sprintf("inside the CA's renewal window %s .. %s", ari.Start.UTC().Format(time.RFC3339), ari.End.UTC().Format(time.RFC3339))
	default:
		d.Reason = fmt.Sprintf("valid for %s more; renewal due at %s", left, d.RenewAt.UTC().Format(time.RFC3339))
	}
	if d.Due && ari != nil && ari.ExplanationURL != "" {
		d.Reason += " (CA explanation: " + ari.ExplanationURL + ")"
	}
	return d
}

// Human renders a duration as the renewal messages do.
func Human(d time.Duration) string { return human(d) }

// human renders a duration for people: whole days from two days up,
// minutes below that, seconds under a minute.
func human(d time.Duration) string {
	switch {
	case d >= 48*time.Hour:
		return fmt.Sprintf("%d days", int(d.Hours()/24))
	case d >= 2*time.Hour:
		return d.Round(time.Minute).String()
	}
	return d.Round(time.Second).String()
}
