"""What draws: Figure 3 (agreement), Figure 7 (training curves); one style and one ``save_figure`` (:mod:`.style`)."""
