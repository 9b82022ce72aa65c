package acme

// AccountURI is the account's URL at the CA.
func (c *Client) AccountURI() string { return c.acct.reg.URI }

// AccountDir is where the account's files are.
func (c *Client) AccountDir() string { return c.acct.dir }
