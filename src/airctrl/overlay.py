"""The HUD: boxes, ids, emotions, confidence bars and status drawn on frames."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from airctrl.pipeline import FaceResult, FrameResult

__all__ = ["EMOTION_COLORS_BGR", "HudRenderer", "HudStatus", "LightModeSwitch"]

#: One colour per emotion (BGR, as OpenCV draws).
EMOTION_COLORS_BGR: dict[str, tuple[int, int, int]] = {
    "neutral": (200, 200, 200),
    "happy": (60, 200, 60),
    "sad": (200, 120, 40),
    "angry": (40, 40, 220),
    "surprised": (40, 200, 230),
    "fear": (200, 60, 200),
    "disgust": (40, 140, 110),
}
_PANEL_BGR = (30, 30, 30)
_TEXT_BGR = (255, 255, 255)
_WARN_BGR = (0, 165, 255)


@dataclass(frozen=True)
class HudStatus:
    """Frame-level facts the HUD shows besides the faces."""

    fps: float
    light_mode: bool = False
    source_state: str = "connected"
    source_name: str = ""


class LightModeSwitch:
    """Switch light mode on when FPS falls under a threshold, off when it recovers.

    Two thresholds give hysteresis: on below ``below_fps``, off at or above
    ``recover_fps`` (which must not be lower). ``below_fps = 0`` disables it.
    """

    def __init__(self, *, below_fps: float, recover_fps: float) -> None:
        if recover_fps < below_fps:
            raise ValueError(
                f"recover_fps: expected >= below_fps ({below_fps}), got {recover_fps}"
            )
        self.below_fps = below_fps
        self.recover_fps = recover_fps
        self.is_on = False

    def update(self, fps: float) -> bool:
        """Fold in the latest FPS reading and return whether light mode is on."""
        if self.below_fps <= 0:
            self.is_on = False
        elif not self.is_on and fps < self.below_fps:
            self.is_on = True
        elif self.is_on and fps >= self.recover_fps:
            self.is_on = False
        return self.is_on


def _put_text(
    image: npt.NDArray[np.uint8],
    text: str,
    origin: tuple[int, int],
    scale: float,
    color: tuple[int, int, int] = _TEXT_BGR,
    thickness: int = 1,
) -> None:
    cv2.putText(
        image,
        text,
        origin,
        cv2.FONT_HERSHEY_SIMPLEX,
        scale,
        (0, 0, 0),
        thickness + 2,
        cv2.LINE_AA,
    )
    cv2.putText(
        image,
        text,
        origin,
        cv2.FONT_HERSHEY_SIMPLEX,
        scale,
        color,
        thickness,
        cv2.LINE_AA,
    )


class HudRenderer:
    """Draw a :class:`FrameResult` on a BGR frame.

    Full mode shows per face: box, ``#id emotion``, a confidence bar, the top
    evidence, liveness and a "calibrating" tag; plus FPS and source state. Light
    mode keeps only boxes, labels and FPS, for slow machines.
    """

    def __init__(self, *, font_scale: float = 0.6) -> None:
        if font_scale <= 0:
            raise ValueError(f"font_scale: expected > 0, got {font_scale}")
        self.font_scale = font_scale

    def draw(
        self,
        image_bgr: npt.NDArray[np.uint8],
        result: FrameResult | None,
        status: HudStatus,
    ) -> npt.NDArray[np.uint8]:
        """Draw on ``image_bgr`` in place (HxWx3 uint8 BGR) and return it."""
        if result is not None:
            for face in result.faces:
                self._draw_face(image_bgr, face, light=status.light_mode)
        self._draw_status(image_bgr, result, status)
        return image_bgr

    def _draw_face(
        self, image: npt.NDArray[np.uint8], face: FaceResult, *, light: bool
    ) -> None:
        color = EMOTION_COLORS_BGR.get(face.emotion.label, _TEXT_BGR)
        x, y, w, h = face.box.x, face.box.y, face.box.width, face.box.height
        cv2.rectangle(image, (x, y), (x + w, y + h), color, 2)

        scale = self.font_scale
        label = f"#{face.face_id} {face.emotion.label} {face.emotion.confidence:.0%}"
        text_y = y - 8 if y > 24 else min(y + h + 18, image.shape[0] - 4)
        _put_text(image, label, (x, text_y), scale, color, 2 if not light else 1)
        if not light:
            self._draw_panel(image, face, color)

    def _panel_lines(self, face: FaceResult) -> list[str]:
        lines = [f"{name} {value:.2f}" for name, value in face.emotion.evidence[:3]]
        if face.calibrating:
            lines.append("calibrating baseline...")
        if face.liveness:
            lines.append(f"liveness: {face.liveness} (blinks {face.blinks})")
        lines.extend(flag.replace("_", " ") for flag in face.emotion.flags)
        return lines

    def _draw_panel(
        self,
        image: npt.NDArray[np.uint8],
        face: FaceResult,
        color: tuple[int, int, int],
    ) -> None:
        """Draw the confidence bar and evidence in a panel beside the box.

        The panel goes right of the box, else left of it, else inside its top
        edge, and is shifted up so it always stays inside the frame.
        """
        height, width = image.shape[:2]
        scale = self.font_scale * 0.75
        lines = self._panel_lines(face)
        sizes = [
            cv2.getTextSize(line, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0]
            for line in lines
        ]
        line_h = max([s[1] for s in sizes] + [10]) + 8
        panel_w = max([s[0] for s in sizes] + [80]) + 12
        panel_h = 18 + line_h * len(lines)

        box = face.box
        if box.x + box.width + 6 + panel_w <= width:
            px = box.x + box.width + 6
        elif box.x - 6 - panel_w >= 0:
            px = box.x - 6 - panel_w
        else:
            px = max(0, min(box.x + 4, width - panel_w))
        py = max(0, min(box.y, height - panel_h))

        region = image[py : py + panel_h, px : px + panel_w]
        region[:] = (region.astype(np.uint16) * 2 // 5).astype(np.uint8)
        bar_w = panel_w - 12
        cv2.rectangle(
            image, (px + 6, py + 6), (px + 6 + bar_w, py + 12), _PANEL_BGR, -1
        )
        filled = int(bar_w * min(max(face.emotion.confidence, 0.0), 1.0))
        cv2.rectangle(image, (px + 6, py + 6), (px + 6 + filled, py + 12), color, -1)
        for i, line in enumerate(lines):
            baseline_y = py + 18 + line_h * (i + 1) - 6
            cv2.putText(
                image, line, (px + 6, baseline_y), cv2.FONT_HERSHEY_SIMPLEX, scale,
                _TEXT_BGR, 1, cv2.LINE_AA,
            )  # fmt: skip

    def _draw_status(
        self,
        image: npt.NDArray[np.uint8],
        result: FrameResult | None,
        status: HudStatus,
    ) -> None:
        scale = self.font_scale
        parts = [f"{status.fps:4.1f} FPS"]
        if result is not None:
            parts.append(
                f"{len(result.faces)} face{'s' if len(result.faces) != 1 else ''}"
            )
        if status.light_mode:
            parts.append("LIGHT")
        if status.source_name:
            parts.insert(0, status.source_name)
        text = "  ".join(parts)
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        cv2.rectangle(image, (0, 0), (tw + 16, th + 16), _PANEL_BGR, -1)
        _put_text(image, text, (8, th + 8), scale)
        if status.source_state != "connected":
            _put_text(
                image,
                f"SOURCE {status.source_state.upper()}",
                (8, th + 40),
                scale,
                _WARN_BGR,
                2,
            )
