package acme

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/certpush/certpush/internal/acme/http01"
)

// Publisher puts HTTP-01 token files where the CA will fetch them: the
// webroot of every web host that the name may be routed to, at
// <webroot>/.well-known/acme-challenge/<token>.
//
// Contract:
//   - Publish writes keyAuth as the file's whole content on every host and
//     returns nil only when every host has it; a host that failed makes it
//     return an error naming that host (the CA may reach any of them). The
//     file must be readable by the web server (world-readable is fine: a
//     token is not a secret). Publishing a token that is already there
//     replaces it (idempotent).
//   - Unpublish removes the file from every host, best effort: it tries
//     every host even after a failure and returns the failures joined. A
//     file that is already gone is not an error.
//   - Every Publish is followed by an Unpublish of the same token, also
//     when Publish failed, and also when the validation failed.
//   - Calls for one certificate come one at a time: Publish(t1),
//     Unpublish(t1), Publish(t2), ... Implementations need not be safe for
//     concurrent calls from several Obtain calls; this package does not
//     make them.
//   - Both honour ctx: when it ends they stop and return its error.
//   - token is base64url (RFC 8555 section 8.3: [A-Za-z0-9_-]) and is
//     checked by the caller (http01.ValidToken); it never holds '/' or '..'.
type Publisher interface {
	Publish(ctx context.Context, token string, keyAuth []byte) error
	Unpublish(ctx context.Context, token string) error
}

// publisherProvider is lego's challenge.Provider over a Publisher.
type publisherProvider struct {
	pub Publisher
	log *slog.Logger
}

func (p *publisherProvider) Present(ctx context.Context, domain, token, keyAuth string) error {
	if !http01.ValidToken(token) {
		return errBadToken
	}
	p.log.Info("acme http-01: publishing token", "domain", domain, "path", http01.ChallengePath(token))
	if err := p.pub.Publish(ctx, token, []byte(keyAuth)); err != nil {
		// lego cleans up only after a successful Present; hosts that did
		// get the file must lose it again.
		if uerr := p.unpublish(ctx, token); uerr != nil {
			p.log.Warn("acme http-01: removing token after failed publish", "domain", domain, "err", uerr)
		}
		return err
	}
	return nil
}

func (p *publisherProvider) CleanUp(ctx context.Context, domain, token, _ string) error {
	if !http01.ValidToken(token) {
		return errBadToken
	}
	p.log.Info("acme http-01: removing token", "domain", domain, "path", http01.ChallengePath(token))
	return p.unpublish(ctx, token)
}

// unpublishTimeout bounds the removal of a token.
const unpublishTimeout = time.Minute

// unpublish removes token also when ctx has ended: the files must not
// stay.
func (p *publisherProvider) unpublish(ctx context.Context, token string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), unpublishTimeout)
	defer cancel()
	return p.pub.Unpublish(ctx, token)
}

var errBadToken = errors.New("acme http-01: token is not base64url")
