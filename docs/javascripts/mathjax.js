// MathJax settings for pymdownx.arithmatex (generic mode): \( \) inline, \[ \] display. MathJax
// typesets the page once when it loads (the theme's instant navigation is off, so every page is
// a full load); the script is served from the site (javascripts/mathjax/), never from a CDN.
window.MathJax = {
  tex: {inlineMath: [["\\(", "\\)"]], displayMath: [["\\[", "\\]"]], processEscapes: true, processEnvironments: true},
  options: {ignoreHtmlClass: ".*|", processHtmlClass: "arithmatex"},
  svg: {fontCache: "global"}
};
