"""Payment providers behind one interface (base.Provider). Adding one (BTCPay) is a new module here and one line
in `build_providers`; the market service only speaks the interface."""
