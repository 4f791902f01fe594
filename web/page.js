// Names for what Gradio draws without one: the pictures' alt text, the results' and examples' labels.
() => {
  const named = {
    "#query-image img": "Your photo",
    "#regions img": "Your photo with the furniture found boxed and named",
    "#crop-picture img": "Your photo, to crop: tap two opposite corners of the piece",
    "#why img": "Your photo and the picked product side by side, the parts that look alike painted warm",
  };
  const label = () => {
    for (const [selector, text] of Object.entries(named)) {
      document.querySelectorAll(selector).forEach((img) => { if (!img.alt) img.alt = text; });
    }
    document.querySelectorAll("#results .thumbnail-item").forEach((button) => {
      const caption = button.querySelector(".caption-label");
      if (caption && button.getAttribute("aria-label") !== caption.textContent) {
        button.setAttribute("aria-label", caption.textContent);
      }
      // The button says what the result is; its picture would only say it again.
      button.querySelectorAll("img").forEach((img) => { if (img.alt) img.alt = ""; });
    });
    // Footer icons next to their words ("Settings"): decorative.
    document.querySelectorAll("footer a img, footer button img").forEach((img) => { if (img.alt) img.alt = ""; });
    document.querySelectorAll("#examples button").forEach((button, i) => {
      if (!button.getAttribute("aria-label")) button.setAttribute("aria-label", `Try example photo ${i + 1}`);
      button.querySelectorAll("img").forEach((img) => { if (!img.alt) img.alt = `Example photo ${i + 1}`; });
    });
  };
  new MutationObserver(label).observe(document.body, { childList: true, subtree: true, attributes: true,
                                                        attributeFilter: ["src"] });
  label();
}
