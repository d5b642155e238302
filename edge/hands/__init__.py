"""Hand stage: MediaPipe palm detector + hand landmark model (zoo models `palm_detection_*`, `hand_landmark_*`).

ROIs come from the pose wrists (MediaPipe Holistic's trick) and from the previous frame's hand landmarks
(tracking); the palm detector runs only as a fallback (or always, when configured). See docs/TRYON.md "Gestures".
"""
