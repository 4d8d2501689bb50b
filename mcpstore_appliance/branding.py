"""The operator's brand: name, company, logo and accent colour from `[branding]` (config.py validates them).

Pages take it through the template context (always autoescaped), the accent colour through a tiny stylesheet
(`css`, since the CSP allows no inline styles), and the MDM renderers through RenderContext. The logo is a
file name inside `<data_dir>/branding/`; `logo_file` resolves it and refuses anything that lands outside that
folder (a symlink out of it too), so a configuration mistake cannot serve another file.
"""

from __future__ import annotations

import mimetypes
from dataclasses import dataclass
from pathlib import Path

from .config import BrandingSettings, Settings

LOGO_TYPES = {".svg": "image/svg+xml", ".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg",
              ".webp": "image/webp"}
MAX_LOGO_BYTES = 512 << 10


@dataclass(frozen=True)
class Brand:
    name: str
    operator: str
    accent: str  # #rrggbb
    logo: str  # a file name in the branding folder, or ""

    @classmethod
    def from_settings(cls, settings: BrandingSettings) -> Brand:
        return cls(settings.name, settings.operator, settings.accent_color, settings.logo)

    @property
    def title(self) -> str:
        """How pages sign off: "Acme MCP registry (Acme Corp)", or the name alone."""
        return f"{self.name} ({self.operator})" if self.operator and self.operator != self.name else self.name

    def css(self) -> str:
        """The accent colour and a darker shade for hovers, as CSS custom properties."""
        return f":root {{ --accent: {self.accent}; --accent-dark: {darker(self.accent)}; }}\n"


def darker(color: str, factor: float = 0.7) -> str:
    red, green, blue = (int(color[i:i + 2], 16) for i in (1, 3, 5))
    return "#" + "".join(f"{int(part * factor):02x}" for part in (red, green, blue))


def branding_dir(settings: Settings) -> Path:
    return Path(settings.data_dir) / "branding"


def logo_file(settings: Settings) -> tuple[Path, str] | None:
    """(path, media type) of the configured logo, or None: none configured, missing, too large, or outside
    the branding folder once links are resolved."""
    name = settings.branding.logo
    if not name:
        return None
    folder = branding_dir(settings).resolve()
    path = (folder / name).resolve()
    if path.parent != folder or not path.is_file() or path.stat().st_size > MAX_LOGO_BYTES:
        return None
    media_type = LOGO_TYPES.get(path.suffix.lower()) or mimetypes.guess_type(path.name)[0]
    return (path, media_type) if media_type in LOGO_TYPES.values() else None
