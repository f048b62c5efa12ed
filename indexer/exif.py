"""The few EXIF fields Pixglot stores: capture date, camera, GPS position, orientation."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from PIL import Image

_EXIF_IFD = 0x8769
_GPS_IFD = 0x8825
_MAKE, _MODEL, _DATETIME, _ORIENTATION = 0x010F, 0x0110, 0x0132, 0x0112
_DATETIME_ORIGINAL, _DATETIME_DIGITIZED = 0x9003, 0x9004
_GPS_LAT_REF, _GPS_LAT, _GPS_LON_REF, _GPS_LON = 1, 2, 3, 4
_CAMERA_MAX = 255


@dataclass(frozen=True)
class ImageMetadata:
    taken_at: datetime | None = None
    camera: str | None = None
    gps_lat: float | None = None
    gps_lon: float | None = None
    orientation: int = 1


def read_metadata(exif: Image.Exif) -> ImageMetadata:
    if not exif:
        return ImageMetadata()
    details = exif.get_ifd(_EXIF_IFD)
    taken = _parse_datetime(
        details.get(_DATETIME_ORIGINAL) or details.get(_DATETIME_DIGITIZED) or exif.get(_DATETIME)
    )
    lat, lon = _gps(exif.get_ifd(_GPS_IFD))
    orientation = exif.get(_ORIENTATION, 1)
    return ImageMetadata(
        taken_at=taken,
        camera=_camera(exif.get(_MAKE), exif.get(_MODEL)),
        gps_lat=lat,
        gps_lon=lon,
        orientation=orientation if isinstance(orientation, int) else 1,
    )


def _text(value: object) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return str(value).replace("\x00", "").strip() if value is not None else ""


def _camera(make: object, model: object) -> str | None:
    make_text, model_text = _text(make), _text(model)
    # Many cameras repeat the maker in the model ("Canon" + "Canon EOS 5D").
    if make_text and model_text.lower().startswith(make_text.lower().split()[0]):
        make_text = ""
    camera = " ".join(part for part in (make_text, model_text) if part)
    return camera[:_CAMERA_MAX] or None


def _parse_datetime(value: object) -> datetime | None:
    text = _text(value)
    for fmt in ("%Y:%m:%d %H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y:%m:%d %H:%M", "%Y:%m:%d"):
        try:
            return datetime.strptime(text[: len(fmt) + 2], fmt)
        except ValueError:
            continue
    return None


def _degrees(value: object) -> float | None:
    try:
        parts = [float(v) for v in value]  # type: ignore[union-attr]
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    if len(parts) != 3:
        return None
    return parts[0] + parts[1] / 60 + parts[2] / 3600


def _gps(gps: dict) -> tuple[float | None, float | None]:
    lat, lon = _degrees(gps.get(_GPS_LAT)), _degrees(gps.get(_GPS_LON))
    if lat is None or lon is None:
        return None, None
    if _text(gps.get(_GPS_LAT_REF)).upper().startswith("S"):
        lat = -lat
    if _text(gps.get(_GPS_LON_REF)).upper().startswith("W"):
        lon = -lon
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        return None, None
    return lat, lon
