"""Who may call: access tokens and the button window, and the runtime settings a manager changes."""
