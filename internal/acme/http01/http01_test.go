package http01

import (
	"strings"
	"testing"
)

func TestValidToken(t *testing.T) {
	testCases := []struct {
		desc  string
		token string
		want  bool
	}{
		{desc: "base64url", token: "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA", want: true},
		{desc: "empty"},
		{desc: "slash", token: "a/b"},
		{desc: "dot dot", token: ".."},
		{desc: "padding", token: "abc="},
		{desc: "plus", token: "a+b"},
		{desc: "space", token: "a b"},
		{desc: "non-ascii", token: "é"},
		{desc: "longest", token: strings.Repeat("a", MaxTokenLen), want: true},
		{desc: "too long", token: strings.Repeat("a", MaxTokenLen+1)},
	}
	for _, tc := range testCases {
		t.Run(tc.desc, func(t *testing.T) {
			if got := ValidToken(tc.token); got != tc.want {
				t.Errorf("ValidToken(%q) = %v, want %v", tc.token, got, tc.want)
			}
		})
	}
}

func TestChallengePath(t *testing.T) {
	if got, want := ChallengePath("tok"), "/.well-known/acme-challenge/tok"; got != want {
		t.Errorf("ChallengePath = %q, want %q", got, want)
	}
}
