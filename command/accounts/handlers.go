package accounts

// Handlers holds every account use case, so the composition root wires one value
// and the api and the CLI take what they need.
type Handlers struct {
	Register    RegisterHandler
	Login       LoginHandler
	Refresh     RefreshHandler
	Logout      LogoutHandler
	AccountByID AccountByIDHandler
	CreateUser  CreateUserHandler
	SetRole     SetRoleHandler
}

// NewHandlers builds every handler on store and tokens. It fails on a nil
// dependency or a Config out of bounds (a bcrypt cost outside 10–12). It computes
// the dummy hash of login once, which takes one bcrypt hash's time.
func NewHandlers(store AccountStore, tokens AccessTokens, cfg Config) (Handlers, error) {
	c, err := newCore(store, tokens, cfg)
	if err != nil {
		return Handlers{}, err
	}
	return Handlers{
		Register:    RegisterHandler{core: c},
		Login:       LoginHandler{core: c},
		Refresh:     RefreshHandler{core: c},
		Logout:      LogoutHandler{core: c},
		AccountByID: AccountByIDHandler{core: c},
		CreateUser:  CreateUserHandler{core: c},
		SetRole:     SetRoleHandler{core: c},
	}, nil
}
