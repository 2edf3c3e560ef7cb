"""Who may log in (bcrypt htpasswd, GitHub OAuth, login limits) and what each role may do."""
