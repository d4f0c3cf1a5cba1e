// MathJax reads the math that pymdownx.arithmatex (generic mode) writes: \( … \) inline, \[ … \] display,
// inside elements of class "arithmatex" only, so code blocks and prose with "$" are left alone.
window.MathJax = {
  tex: {
    inlineMath: [["\\(", "\\)"]],
    displayMath: [["\\[", "\\]"]],
    processEscapes: true,
    processEnvironments: true,
  },
  options: {
    ignoreHtmlClass: ".*|",
    processHtmlClass: "arithmatex",
  },
};
