package main

import (
	"context"
	"errors"
)

func cmdObtain(ctx context.Context, e *env, args []string) error {
	return usageError{errors.New("obtain: ACME issuance is not available in this build yet")}
}

func cmdRenew(ctx context.Context, e *env, args []string) error {
	return usageError{errors.New("renew: ACME renewal is not available in this build yet")}
}
